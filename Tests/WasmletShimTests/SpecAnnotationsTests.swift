import Testing

@testable import WasmletShim

@Suite struct SpecAnnotationsTests {
    private func sandboxID(_ json: String) -> String? {
        SpecAnnotations.value(forKey: SpecAnnotations.sandboxIDKey, inSpec: Array(json.utf8))
    }

    @Test func findsTheAnnotationAfterNestedContent() {
        let json = """
            {"ociVersion":"1.0.2","process":{"args":["/app.wasm","io.kubernetes.cri.sandbox-id"],
             "env":["A=1"],"user":{"uid":0,"gid":0},"capabilities":{"bounding":[]}},
             "root":{"path":"rootfs","readonly":true},
             "linux":{"resources":{"memory":{"limit":1048576},"cpu":{"shares":2.5e2}},
                      "annotations":{"io.kubernetes.cri.sandbox-id":"not-this-one"}},
             "annotations" : {
                "io.kubernetes.cri.container-type" : "container",
                "io.kubernetes.cri.sandbox-id" : "0123abcd",
                "io.kubernetes.cri.sandbox-name": "pod"
             },
             "mounts":[{"destination":"/proc","type":"proc","options":null}]}
            """
        #expect(sandboxID(json) == "0123abcd")
    }

    @Test func absentKeyOrAnnotations() {
        #expect(sandboxID(#"{"annotations":{"other":"x"}}"#) == nil)
        #expect(sandboxID(#"{"process":{"args":["io.kubernetes.cri.sandbox-id"]}}"#) == nil)
        #expect(sandboxID(#"{}"#) == nil)
        #expect(sandboxID("") == nil)
        // The key's text as a value, or in a nested object of annotations' siblings, is not the key.
        #expect(sandboxID(#"{"x":"io.kubernetes.cri.sandbox-id","annotations":{}}"#) == nil)
        #expect(sandboxID(#"{"hooks":{"annotations":{"io.kubernetes.cri.sandbox-id":"no"}}}"#) == nil)
        // A non-string value does not count.
        #expect(sandboxID(#"{"annotations":{"io.kubernetes.cri.sandbox-id":42}}"#) == nil)
    }

    @Test func decodesEscapes() {
        #expect(sandboxID(#"{"annotations":{"io.kubernetes.cri.sandbox-id":"a\"b\\c\/d\n\t\u0041\u00e9"}}"#) == "a\"b\\c/d\n\tAé")
        // A surrogate pair is one scalar; a lone surrogate becomes U+FFFD.
        #expect(sandboxID(#"{"annotations":{"io.kubernetes.cri.sandbox-id":"\ud83d\ude00-\ud800x"}}"#) == "😀-\u{FFFD}x")
        // Escapes in the key are decoded before comparing.
        #expect(sandboxID(#"{"annotations":{"io.kubernetes.cri.sandbox\u002did":"escaped-key"}}"#) == "escaped-key")
        // Raw UTF-8 passes through.
        #expect(sandboxID(#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod-ü-日本"}}"#) == "pod-ü-日本")
    }

    @Test func malformedInputIsNil() {
        let cases = [
            #"{"annotations":{"io.kubernetes.cri.sandbox-id":"unterminated}}"#,
            #"{"annotations":{"io.kubernetes.cri.sandbox-id":"bad \q escape"}}"#,
            #"{"annotations":{"io.kubernetes.cri.sandbox-id":"\u12"}}"#,
            #"{"annotations" "io.kubernetes.cri.sandbox-id":"x"}"#,
            #"["annotations"]"#,
            String(repeating: "[", count: 100_000),
            "{\"a\":" + String(repeating: "{\"a\":", count: 50_000),
        ]
        for json in cases {
            #expect(sandboxID(json) == nil, "\(json.prefix(60))")
        }
    }

    @Test func groupFallsBackToTheID() throws {
        #expect(ShimSocketPath.group(bundle: "/nonexistent-bundle-\(UInt32.random(in: 0...UInt32.max))", id: "task-1") == "task-1")
    }
}
