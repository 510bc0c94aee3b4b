import Foundation
import Testing
@testable import ShadowFormats
import ShadowKernels
import ShadowTestSupport

@Suite("safetensors writer")
struct SafetensorsWriterTests {
    @Test("writes the length, the sorted JSON header padded to 8 bytes, then each tensor's bytes in order")
    func knownLayout() throws {
        let half: [Float] = [0.5, 1, 65504]
        let json = #"{"__metadata__":{"format":"x"},"a":{"data_offsets":[8,14],"dtype":"F16","shape":[1,3]},"#
            + #""b":{"data_offsets":[0,8],"dtype":"F32","shape":[2]},"empty":{"data_offsets":[14,14],"dtype":"F32","shape":[0]}} "#
        var expected: [UInt8] = [200, 0, 0, 0, 0, 0, 0, 0] + Array(json.utf8)
        expected += [0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0]   // 1, -2 as little-endian f32
        expected += [0x00, 0x38, 0x00, 0x3C, 0xFF, 0x7B]               // 0.5, 1, 65504 as f16
        let path = TestScratch.path("layout", suffix: ".safetensors")
        // The borrowed buffer is valid only inside the closure: everything that reads it stays there.
        try half.withUnsafeBufferPointer { half in
            var writer = SafetensorsWriter(metadata: ["format": "x"])
            writer.add("b", shape: [2], values: [1, -2])
            writer.add("a", shape: [1, 3], borrowing: half, dtype: .f16)
            writer.add("empty", shape: [0], values: [])
            try writer.write(to: path)
            #expect([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) == expected)
            #expect([UInt8](try writer.encoded()) == expected)
        }
    }

    @Test("a streamed file of borrowed and owned tensors larger than one block reads back bit for bit")
    func roundTrip() throws {
        var generator = SplitMix64(seed: 0x5AFE)
        let count = 150_001  // more than two F16 blocks of 65,536, and not a multiple of either
        let big = (0..<count).map { _ in Float(generator.next() % 20_000) / 7 - 1000 }
        let small = (0..<37).map { _ in Float(generator.next() % 1000) / 3 }
        var writer = SafetensorsWriter(metadata: ["k": "v"])
        let path = TestScratch.path("stream", suffix: ".safetensors")
        try big.withUnsafeBufferPointer { big in
            writer.add("big.f32", shape: [count], borrowing: big)
            writer.add("big.f16", shape: [1, count], borrowing: big, dtype: .f16)
            writer.add("small", shape: [37], values: small)
            try writer.write(to: path)
        }
        let file = try SafetensorsFile(path: path)
        #expect(file.metadata == ["k": "v"])
        #expect(try file.floats("big.f32") == big)
        #expect(try file.floats("small") == small)
        // F16 narrowed block by block equals the whole tensor narrowed at once.
        var halves = [UInt16](repeating: 0, count: count)
        HalfVectors.narrow(&halves, big, count: count)
        var widened = [Float](repeating: 0, count: count)
        HalfVectors.widen(&widened, halves, count: count)
        #expect(try file.floats("big.f16") == widened)
        // No temporary of this file is left beside it (other tests write into the same directory
        // at the same time, so only this file's `.NAME.PID.partial` counts).
        let directory = (path as NSString).deletingLastPathComponent, name = (path as NSString).lastPathComponent
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("." + name + ".") }.isEmpty)
    }

    @Test("a streamed write that fails part-way leaves neither the file nor its temporary")
    func failedStream() throws {
        struct Stop: Error {}
        let directory = TestScratch.path("failed-stream")
        let path = directory + "/out.bin"
        #expect(throws: Stop.self) {
            try AtomicFile.write(to: path) { sink in
                try [UInt8](repeating: 1, count: 100).withUnsafeBytes { try sink($0) }
                throw Stop()
            }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
        try AtomicFile.write(to: path) { sink in try [UInt8]([1, 2, 3]).withUnsafeBytes { try sink($0) } }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data([1, 2, 3]))
    }
}

@Suite("Atomic file writes to unusual places")
struct AtomicFileTargetTests {
    @Test("a file replaced keeps its permissions; a partial file of a live writer is kept, one of a dead writer removed")
    func permissionsAndPartials() throws {
        let directory = TestScratch.path("modes")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/private.json"
        try AtomicFile.write("old", to: path)
        chmod(path, 0o600)
        try AtomicFile.write("new", to: path)
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int == 0o600)
        // PID 1 is alive (EPERM for other users, success for root); no process has PID 2^22 + 1 here.
        for pid in [1, 4_194_305] { try "x".write(toFile: "\(directory)/.private.json.\(pid).partial", atomically: false, encoding: .utf8) }
        AtomicFile.removeStalePartials(of: "private.json", in: directory)
        let left = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".partial") }
        #expect(left == [".private.json.1.partial"], "\(left)")
    }

    @Test("a symbolic link keeps pointing at its target, which receives the new file")
    func symbolicLink() throws {
        let directory = TestScratch.path("link-target")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try "old".write(toFile: directory + "/target.json", atomically: false, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: directory + "/link.json", withDestinationPath: "target.json")
        try AtomicFile.write("new", to: directory + "/link.json")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: directory + "/link.json") == "target.json")
        #expect(try String(contentsOfFile: directory + "/target.json", encoding: .utf8) == "new")
        // A link to a file still to be written: the file appears at the link's end.
        try FileManager.default.createSymbolicLink(atPath: directory + "/ahead.json", withDestinationPath: directory + "/later.json")
        try AtomicFile.write("later", to: directory + "/ahead.json")
        #expect(try String(contentsOfFile: directory + "/later.json", encoding: .utf8) == "later")
    }

    @Test("a character device or a named pipe is written in place, not replaced by a file")
    func devicesAndPipes() throws {
        try AtomicFile.write("discarded", to: "/dev/null")
        var status = stat()
        #expect(stat("/dev/null", &status) == 0 && status.st_mode & S_IFMT == S_IFCHR)
        #expect(throws: ShadowError.failed("cannot write /dev/full: No space left on device")) {
            try AtomicFile.write(String(repeating: "x", count: 1 << 16), to: "/dev/full")
        }

        let fifo = TestScratch.path("fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        final class Box: @unchecked Sendable { var read: Data? }
        let box = Box(), done = DispatchSemaphore(value: 0)
        Thread { box.read = try? readWholeFile(fifo, acceptingStreams: true); done.signal() }.start()
        try AtomicFile.write("through the pipe", to: fifo)
        done.wait()
        #expect(box.read == Data("through the pipe".utf8))
        #expect(stat(fifo, &status) == 0 && status.st_mode & S_IFMT == S_IFIFO)
    }

    @Test("an output over an input is refused whatever way it is spelled; a new file beside it is not")
    func outputOverInput() throws {
        let directory = TestScratch.path("inputs")
        try FileManager.default.createDirectory(atPath: directory + "/traces", withIntermediateDirectories: true)
        try "data".write(toFile: directory + "/data.jsonl", atomically: false, encoding: .utf8)
        try "{}".write(toFile: directory + "/traces/manifest.json", atomically: false, encoding: .utf8)
        let inputs: [(option: String, path: String)] = [("--data", directory + "/data.jsonl"), ("--traces", directory + "/traces"),
                                                        ("--traces", directory + "/traces/manifest.json")]
        #expect(throws: ShadowError.invalidArgument(name: "--samples", reason: "\(directory)/./data.jsonl would overwrite --data \(directory)/data.jsonl")) {
            try AtomicFile.refuseOverwriting(directory + "/./data.jsonl", option: "--samples", inputs: inputs)
        }
        #expect(throws: ShadowError.self) {
            try AtomicFile.refuseOverwriting(directory + "/traces/../data.jsonl", option: "--samples", inputs: inputs)
        }
        try FileManager.default.createSymbolicLink(atPath: directory + "/alias", withDestinationPath: "traces")
        #expect(throws: ShadowError.self) {
            try AtomicFile.refuseOverwriting(directory + "/alias/manifest.json", option: "--out", inputs: inputs)
        }
        try AtomicFile.refuseOverwriting(directory + "/alias/scores.json", option: "--out", inputs: inputs)   // a file of its own
        try AtomicFile.refuseOverwriting(directory + "/new/out.json", option: "--out", inputs: inputs)
    }

    @Test("an open descriptor (/dev/fd/N) is written in place: a pipe gets the bytes, a file keeps what it held and gets them after")
    func openDescriptors() throws {
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { close(ends[0]) }
        try AtomicFile.write("into the pipe", to: "/dev/fd/\(ends[1])")
        close(ends[1])
        #expect(try readWholeFile("/dev/fd/\(ends[0])", acceptingStreams: true) == Data("into the pipe".utf8))

        let file = TestScratch.path("redirected", suffix: ".txt")
        try "before\n".write(toFile: file, atomically: false, encoding: .utf8)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: file))
        defer { try? handle.close() }
        try AtomicFile.write("after\n", to: "/dev/fd/\(handle.fileDescriptor)")
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "before\nafter\n")
    }

    @Test("an endless device is refused once it passes the limit, and a larger regular file before reading")
    func endlessInput() throws {
        #expect(throws: ShadowError.unreadableFile(path: "/dev/zero", reason: "longer than 1 MiB, more than any text or JSON file this tool reads")) {
            try readWholeFile("/dev/zero", limit: 1 << 20, acceptingStreams: true)
        }
        #expect(throws: ShadowError.corruptFile(path: "/dev/zero", reason: "not a regular file")) { try readWholeFile("/dev/zero") }
        let file = TestScratch.path("large", suffix: ".txt")
        try Data(count: 4096).write(to: URL(fileURLWithPath: file))
        #expect(throws: ShadowError.self) { try readWholeFile(file, limit: 1024) }
        #expect(try readWholeFile(file, limit: 4096).count == 4096)
    }

    @Test("a named pipe where a program's file belongs is refused at once; one holding a user's text is read")
    func pipeAsWholeFile() throws {
        let fifo = TestScratch.path("state-fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        let start = Date()
        #expect(throws: ShadowError.corruptFile(path: fifo, reason: "not a regular file")) { try readWholeFile(fifo) }
        #expect(Date().timeIntervalSince(start) < 4, "readWholeFile waited for a writer")
        DispatchQueue.global().async {
            let writer = open(fifo, O_WRONLY)
            guard writer >= 0 else { return }
            _ = "piped text".withCString { write(writer, $0, 10) }
            close(writer)
        }
        #expect(try readWholeFile(fifo, acceptingStreams: true) == Data("piped text".utf8))
    }

    @Test("a named pipe given as a mapped file is refused at once rather than waiting for a writer")
    func pipeAsMappedFile() throws {
        let fifo = TestScratch.path("model-fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        // A blocking open would wait for a writer forever; this one comes after 5 s (a writer's
        // non-blocking open succeeds only while a reader waits), so a regression fails, not hangs.
        DispatchQueue.global().asyncAfter(deadline: .now() + 5) {
            let writer = open(fifo, O_WRONLY | O_NONBLOCK)
            if writer >= 0 { close(writer) }
        }
        let start = Date()
        #expect(throws: ShadowError.corruptFile(path: fifo, reason: "not a regular file")) { try MappedFile(path: fifo) }
        #expect(Date().timeIntervalSince(start) < 4, "MappedFile waited for a writer")
    }
}
