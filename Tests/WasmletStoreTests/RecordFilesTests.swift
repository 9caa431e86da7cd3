import Foundation
import Glibc
import Testing
import WasmletTestSupport

@testable import WasmletStore

/// The record files and their spare pool, alone: what each update changes, and that a removed
/// record's inode is what the next new record gets (also across a restart).
@Suite struct RecordFilesTests {
    private func inode(_ path: String) -> UInt64? {
        var info = stat()
        return stat(path, &info) == 0 ? UInt64(info.st_ino) : nil
    }

    @Test func updatesReportTheDirectoriesTheyChangeAndRemovedFilesAreReused() throws {
        let directory = try TemporaryDirectory()
        let instances = directory.path + "/instances"
        #expect(mkdir(instances, 0o700) == 0)
        let namespace = instances + "/ns"
        var files = RecordFiles(instancesDirectory: instances)

        // The first write in a namespace makes its directory: instances/ changed too.
        #expect(try files.write(Array("first record".utf8), to: namespace + "/a.json", in: namespace) == [instances])
        #expect(try files.write(Array("b".utf8), to: namespace + "/b.json", in: namespace) == [])
        // Rewritten in place, and truncated to the new body.
        #expect(try files.write(Array("short".utf8), to: namespace + "/a.json", in: namespace) == [])
        #expect(try String(contentsOfFile: namespace + "/a.json", encoding: .utf8) == "short")

        // A removal keeps the file as a spare; the next new record takes that inode over.
        let removedInode = try #require(inode(namespace + "/a.json"))
        #expect(try files.remove(namespace + "/a.json") == [instances + "/.free"])
        #expect(!FileManager.default.fileExists(atPath: namespace + "/a.json"))
        #expect(try files.write(Array("c".utf8), to: namespace + "/c.json", in: namespace) == [instances + "/.free"])
        #expect(inode(namespace + "/c.json") == removedInode)
        #expect(try String(contentsOfFile: namespace + "/c.json", encoding: .utf8) == "c")
        // Removing what is not there is no error.
        #expect(try files.remove(namespace + "/missing.json") == [])

        // A later daemon adopts the spares an earlier one left.
        let spareInode = try #require(inode(namespace + "/b.json"))
        _ = try files.remove(namespace + "/b.json")
        var restarted = RecordFiles(instancesDirectory: instances)
        _ = try restarted.write(Array("d".utf8), to: namespace + "/d.json", in: namespace)
        #expect(inode(namespace + "/d.json") == spareInode)
        directory.remove()
    }

    @Test func aFailedWriteNamesItsPath() throws {
        let directory = try TemporaryDirectory()
        let instances = directory.path + "/instances"
        #expect(mkdir(instances, 0o700) == 0)
        var files = RecordFiles(instancesDirectory: instances)
        // The namespace "directory" is a file: the write cannot make it.
        let blocked = instances + "/blocked"
        #expect(FileManager.default.createFile(atPath: blocked, contents: nil))
        #expect {
            _ = try files.write(Array("x".utf8), to: blocked + "/a.json", in: blocked)
        } throws: { "\($0)".contains(blocked) }
        directory.remove()
    }
}
