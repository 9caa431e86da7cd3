// swift-tools-version:6.1
import PackageDescription

// Layering (see README "Code map"):
//   WasmletConventions  what every program shares: the syntax of sizes, durations, env and
//                       preopen mappings; socket path defaults; shim->daemon metadata keys.
//                       Standard library and libc only, so the shim can use it.
//   WasmletRuntime      engine, instances, limits, scheduler, the guests' WASI sockets, services'
//                       per-request runs — no protobuf
//   WasmletHTTPTrigger  the HTTP trigger: HTTP/1.1 on a service's listeners (SwiftNIO), a fresh
//                       run per request, WAGI's CGI contract — no protobuf, no ttrpc
//   WasmletTTRPC        ttrpc framing, client and server on SwiftNIO — knows nothing of wasmlet
//   WasmletAPI          generated protobuf messages for the wasmlet.v1 and containerd APIs
//
//   WasmletStore        durable instance records: journal, record files, checkpoints, recovery.
//                       Over the runtime's value types: no protobuf, NIO or ttrpc.
//   WasmletService      InstanceService, the one instance service under both APIs (value types
//                       in and out, durable records); RequestInterceptor (status mapping,
//                       metrics, logs for every request); RuntimeService, the wasmlet.v1 adapter
//   WasmletContainerd   containerd's task service, an adapter over InstanceService (spec
//                       mapping, events, FIFO holds, listener handoff)
//   WasmletDaemon       wiring only: configuration, logging, signals, systemd, metrics, servers
//   WasmletParserChild  a TOML text parsed in a child process first, so that a toml++ abort
//                       ends the child, not the daemon or wasmletctl
//
//   wasmletd -> WasmletDaemon -> WasmletContainerd -> WasmletService -> WasmletStore -> WasmletRuntime
//               WasmletDaemon -> WasmletMetrics, WasmletSystemd, WasmletTTRPC, WasmletConventions
//               WasmletDaemon -> WasmletHTTPTrigger -> WasmletRuntime
//               WasmletDaemon, WasmletClient -> WasmletParserChild
//               WasmletService, WasmletContainerd -> WasmletTTRPC, WasmletAPI, WasmletConventions
//               WasmletStore -> WasmletJSON
//   wasmletctl -> WasmletClient, WasmletImage -> WasmletTTRPC, WasmletAPI, WasmletConventions
//   containerd-shim-wasmlet-v1 -> WasmletShim -> WasmletConventions
//   wasmlet-run -> WasmletRuntime, WasmletConventions
//   fuzz-* -> WasmletFuzzSupport and the one module each fuzzes (its `package` FuzzEntryPoints)
//
// The shim and the CLI must never depend on WasmletRuntime (and so never link WasmKit); the
// shim links no Foundation, NIO or protobuf either. The store depends on no service, no
// protobuf, NIO or ttrpc; no arrow above points back. Every module declares what it imports.
// scripts/check-layering.py (run by scripts/test.sh) checks these on the package and binaries.
// Tests mirror the modules (Tests/<Module>Tests, plus WasmletEndToEndTests on the real binary)
// and share Tests/WasmletTestSupport.
let package = Package(
    name: "wasmlet",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "WasmletRuntime", targets: ["WasmletRuntime"]),
        .library(name: "WasmletTTRPC", targets: ["WasmletTTRPC"]),
        .library(name: "WasmletAPI", targets: ["WasmletAPI"]),
        .library(name: "WasmletSystemd", targets: ["WasmletSystemd"]),
        .library(name: "WasmletClient", targets: ["WasmletClient"]),
        .library(name: "WasmletConventions", targets: ["WasmletConventions"]),
        .executable(name: "wasmletctl", targets: ["wasmletctl"]),
        .library(name: "WasmletDaemon", targets: ["WasmletDaemon"]),
        .executable(name: "wasmletd", targets: ["wasmletd"]),
        .executable(name: "containerd-shim-wasmlet-v1", targets: ["containerd-shim-wasmlet-v1"]),
    ],
    dependencies: [
        // WasmKit is pinned exactly: memory caps use its `@_spi(Fuzzing)` resourceLimiter, and
        // the kill mechanism depends on the layout of its fuel counter (see FuelCell.swift).
        .package(url: "https://github.com/swiftwasm/WasmKit", exact: "0.4.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // The node daemon's wiring: configuration, options, logging, signals, systemd, the metrics
        // endpoint, and the servers that put the store and the two services on their sockets.
        // `wasmletd` only calls it. A feature with a job of its own goes into a module of its own.
        .target(
            name: "WasmletDaemon",
            dependencies: [
                "WasmletStore", "WasmletService", "WasmletContainerd",
                "WasmletRuntime", "WasmletTTRPC", "WasmletSystemd", "WasmletMetrics",
                "WasmletConventions", "WasmletFDHandoff", "WasmletHTTPTrigger", "WasmletParserChild",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                // ProgressProbe runs on an event loop of its own.
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Durable instance records: the write-ahead journal with group commit, the per-instance
        // record files, checkpoints and recovery, and the directory of recovered instances.
        // Over the runtime's value types only: no protobuf, NIO or ttrpc (check-layering.py).
        .target(
            name: "WasmletStore",
            dependencies: [
                "WasmletRuntime", "WasmletJSON",
                .product(name: "Logging", package: "swift-log"),
                // RecordFileName hashes long instance ids.
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The wasmlet.v1.Runtime ttrpc service over the runtime and the store: message and error
        // mapping, the List encoder, peer authorization, the runtime's event recorder.
        .target(
            name: "WasmletService",
            dependencies: [
                "WasmletStore", "WasmletRuntime", "WasmletTTRPC", "WasmletAPI", "WasmletConventions",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        // containerd's task service (containerd.task.v2.Task, reached through the shim): OCI spec
        // mapping, task events, output FIFO holds, the exit gate, the listener handoff. An adapter
        // over WasmletService's InstanceService, as the wasmlet.v1 service is.
        .target(
            name: "WasmletContainerd",
            dependencies: [
                "WasmletService", "WasmletStore", "WasmletRuntime", "WasmletTTRPC", "WasmletAPI", "WasmletConventions",
                "WasmletFDHandoff",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        // The HTTP trigger: wasmletd serves HTTP/1.1 on a service's listeners and runs a fresh
        // instance of its module per request, under WAGI's CGI contract. The runtime calls it
        // through its ServingHost protocol; it knows no protobuf, ttrpc or store.
        .target(
            name: "WasmletHTTPTrigger",
            dependencies: [
                "WasmletRuntime", "CWasmletInterrupt",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "WasmletHTTPTriggerTests",
            dependencies: [
                "WasmletHTTPTrigger", "WasmletRuntime", "WasmletTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "WAT", package: "WasmKit"),
            ]
        ),
        // Prometheus metrics and the /metrics, /healthz, /readyz HTTP endpoint. Knows nothing of
        // the engine: the daemon feeds it numbers.
        .target(
            name: "WasmletMetrics",
            dependencies: [
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "WasmletMetricsTests",
            dependencies: [
                "WasmletTestSupport", "WasmletMetrics", "wasmletd", "WasmletTTRPC", "WasmletAPI",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .executableTarget(
            name: "wasmletd",
            dependencies: ["WasmletDaemon", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // Tests mirror the modules: one target per module, plus WasmletEndToEndTests against the
        // real `wasmletd` binary (a dependency so it is built first). All share WasmletTestSupport.
        .testTarget(
            name: "WasmletStoreTests",
            dependencies: ["WasmletStore", "WasmletRuntime", "WasmletTestSupport"]
        ),
        .testTarget(
            name: "WasmletServiceTests",
            dependencies: [
                "WasmletService", "WasmletStore", "WasmletRuntime", "WasmletAPI", "WasmletTestSupport",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "WasmletContainerdTests",
            dependencies: [
                "WasmletContainerd", "WasmletService", "WasmletStore", "WasmletRuntime", "WasmletAPI", "WasmletTTRPC",
                "WasmletFDHandoff", "WasmletTestSupport",
                .product(name: "Logging", package: "swift-log"),
                // The sandbox module's WAT source, checked against its embedded bytes.
                .product(name: "WAT", package: "WasmKit"),
            ]
        ),
        .testTarget(
            name: "WasmletDaemonTests",
            dependencies: [
                "WasmletDaemon", "WasmletContainerd", "WasmletRuntime", "WasmletMetrics", "WasmletTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "WasmletEndToEndTests",
            dependencies: [
                "wasmletd", "WasmletTTRPC", "WasmletAPI", "WasmletFDHandoff", "WasmletTestSupport",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        // What the test targets share instead of copies: ChildProcess (posix_spawn), the daemon
        // harness (DaemonProcess, RuntimeClient, raw ttrpc frames), `eventually`, fixture paths,
        // loopback listeners. A regular target, so its declarations are `package`.
        .target(
            name: "WasmletTestSupport",
            dependencies: [
                "WasmletAPI", "WasmletTTRPC", "WasmletFDHandoff",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            path: "Tests/WasmletTestSupport"
        ),
        // C glue for the kill mechanism: a signal handler that zeroes the running store's fuel.
        .target(name: "CWasmletInterrupt"),
        .target(
            name: "WasmletRuntime",
            dependencies: [
                "CWasmletInterrupt",
                .product(name: "WasmKit", package: "WasmKit"),
                .product(name: "WasmKitWASI", package: "WasmKit"),
                .product(name: "WASI", package: "WasmKit"),
                .product(name: "WasmParser", package: "WasmKit"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "WasmletTTRPC",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            // protos/ is the input of scripts/generate-protos.sh; Generated/ holds its output.
            exclude: ["protos", "Generated/README.md"]
        ),
        .target(
            name: "WasmletAPI",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["protos", "Generated/README.md"]
        ),
        // libsystemd through pkg-config: sd_notify, sd_listen_fds, the journal.
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        // The daemon's systemd glue: sd_notify, watchdog, socket activation, journal.
        .target(name: "WasmletSystemd", dependencies: ["CSystemd"]),
        // Test helper for WasmletSystemdTests: runs SocketActivation as the child of
        // systemd-socket-activate, and the journal sender in a private mount namespace.
        .executableTarget(name: "wasmlet-sd-probe", dependencies: ["WasmletSystemd"]),
        .executableTarget(
            name: "wasmlet-run",
            dependencies: [
                "WasmletRuntime", "WasmletConventions", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "wasmlet-bench",
            dependencies: [
                "WasmletRuntime", "WasmletClient", "WasmletAPI",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "WasmKit", package: "WasmKit"),
                .product(name: "WasmKitWASI", package: "WasmKit"),
                .product(name: "WAT", package: "WasmKit"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Typed client for wasmlet.v1.Runtime plus socket resolution and CLI parsing/formatting.
        // Must never depend on WasmletRuntime: wasmletctl and the shim do not link the engine.
        .target(
            name: "WasmletClient",
            dependencies: [
                "WasmletTTRPC", "WasmletAPI", "WasmletJSON", "WasmletConventions", "WasmletParserChild",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                // WAGI's modules.toml, for `wasmletctl serve --routes`.
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        // What the programs share (see the header): standard library and libc only.
        .target(name: "WasmletConventions"),
        // A TOML text parsed in a child process first (Foundation's Process): wasmletd's --config
        // and wasmletctl's --routes.
        .target(name: "WasmletParserChild"),
        .testTarget(name: "WasmletConventionsTests", dependencies: ["WasmletConventions", "WasmletTestSupport"]),
        // A small JSON writer into UTF-8 bytes: the daemon's instance records and wasmletctl's
        // JSON output. Standard library and libc only.
        .target(name: "WasmletJSON"),
        // OCI image archives holding a Wasm module (`wasmletctl image build`), which
        // `ctr image import` accepts. Foundation and a SHA-256; no engine, no sockets.
        .target(
            name: "WasmletImage",
            dependencies: ["WasmletConventions", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .testTarget(name: "WasmletImageTests", dependencies: ["WasmletImage", "WasmletTestSupport"]),
        // The containerd shim. It relays ttrpc frames between containerd and wasmletd, which
        // implements the task service; the shim itself only mounts the rootfs, tracks its
        // tasks and answers for them if the daemon is gone. Swift stdlib and Glibc only (no
        // Foundation, NIO or protobuf): its memory is paid per pod. Release builds for nodes
        // add `--static-swift-stdlib` (scripts/build-release.sh); not set here, because linker
        // flags of an executable reach the test bundle that links it, and break its link.
        .target(name: "WasmletShim", dependencies: ["WasmletConventions", "WasmletFDHandoff"]),
        // SCM_RIGHTS descriptor passing and the listener handoff's wire format, shared by the
        // shim and wasmletd. Standard library and Glibc only, like the shim.
        .target(name: "WasmletFDHandoff"),
        .executableTarget(name: "containerd-shim-wasmlet-v1", dependencies: ["WasmletShim"]),
        .testTarget(
            name: "WasmletShimTests",
            // The shim binary is a dependency so it is built before the tests run it; the
            // ttrpc and API modules play containerd and wasmletd around it.
            dependencies: [
                "WasmletTestSupport", "WasmletShim", "WasmletFDHandoff", "containerd-shim-wasmlet-v1", "WasmletTTRPC", "WasmletAPI", "WasmletConventions",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "wasmletctl",
            dependencies: [
                "WasmletClient", "WasmletAPI", "WasmletImage", "WasmletConventions",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "WasmletCtlTests",
            // wasmletctl is a dependency so that the binary is built before the tests run them.
            dependencies: [
                "WasmletTestSupport", "WasmletClient", "WasmletJSON", "WasmletAPI", "WasmletTTRPC", "WasmletConventions", "wasmletctl",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .testTarget(
            name: "WasmletRuntimeTests",
            dependencies: ["WasmletTestSupport", "WasmletRuntime", "CWasmletInterrupt", .product(name: "WAT", package: "WasmKit")]
        ),
        .testTarget(
            name: "WasmletSystemdTests",
            // The probe is a dependency only so that it is built before the tests run.
            dependencies: ["WasmletTestSupport", "WasmletSystemd", "wasmlet-sd-probe"]
        ),
        // Fuzz targets (scripts/fuzz.sh builds them with libFuzzer and ASan): one executable per
        // parser, over the real parsing code, with the `main` of WasmletFuzzSupport. An ordinary
        // build replays inputs, which WasmletFuzzTests does with the committed corpora.
        .target(name: "WasmletFuzzSupport"),
        .executableTarget(
            name: "fuzz-ttrpc-frame",
            dependencies: [
                "WasmletFuzzSupport", "WasmletTTRPC",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .executableTarget(name: "fuzz-shim-wire", dependencies: ["WasmletFuzzSupport", "WasmletShim"]),
        .executableTarget(name: "fuzz-oci-config", dependencies: ["WasmletFuzzSupport", "WasmletContainerd", "WasmletShim"]),
        .executableTarget(name: "fuzz-module", dependencies: ["WasmletFuzzSupport", "WasmletRuntime"]),
        .executableTarget(name: "fuzz-wasi-pointers", dependencies: ["WasmletFuzzSupport", "WasmletRuntime"]),
        .executableTarget(name: "fuzz-image-tar", dependencies: ["WasmletFuzzSupport", "WasmletImage"]),
        .executableTarget(name: "fuzz-config-toml", dependencies: ["WasmletFuzzSupport", "WasmletDaemon"]),
        .executableTarget(
            name: "fuzz-http-request",
            dependencies: [
                "WasmletFuzzSupport", "WasmletHTTPTrigger",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "WasmletFuzzTests",
            // The fuzz targets are dependencies so that they are built before the tests replay them.
            dependencies: [
                "WasmletTestSupport", "fuzz-ttrpc-frame", "fuzz-shim-wire", "fuzz-oci-config", "fuzz-module",
                "fuzz-wasi-pointers", "fuzz-image-tar", "fuzz-config-toml", "fuzz-http-request",
            ]
        ),
        .testTarget(
            name: "WasmletTTRPCTests",
            dependencies: [
                "WasmletTestSupport", "WasmletTTRPC",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
    ]
)
