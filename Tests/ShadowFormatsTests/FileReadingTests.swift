import Foundation
import Testing
import ShadowFormats
import ShadowTestSupport

@Suite("Reading whole files")
struct FileReadingTests {
    @Test("a text that begins with a binary format's mark (GGUF, PAR1) is text; the file with the field after the mark is not")
    func marksInText() throws {
        for text in ["GGUF is the file format llama.cpp reads.\n", "GGUF", "PAR1 and PAR1", "PAR1 is Parquet's mark; files end with PAR1"] {
            #expect(try utf8Text(Array(text.utf8), path: "t.txt") == text)
        }
        // A GGUF's version (3) in either byte order; Parquet's footer length (2) before the closing mark.
        #expect(notTextForm(Array("GGUF".utf8) + [3, 0, 0, 0]) == "is a GGUF model file, not text")
        #expect(notTextForm(Array("GGUF".utf8) + [0, 0, 0, 3]) == "is a GGUF model file, not text")
        #expect(notTextForm(Array("PAR1".utf8) + [0x15, 0x04, 2, 0, 0, 0] + Array("PAR1".utf8))?.hasPrefix("is a Parquet file") == true)
        // A footer longer than the file holds is no Parquet footer.
        #expect(notTextForm(Array("PAR1".utf8) + [0x15, 0x04, 3, 0, 0, 0] + Array("PAR1".utf8)) == nil)
    }

    @Test("a file that is there but cannot be read is named with the system's reason, not called missing")
    func unreadableIsNotMissing() throws {
        let directory = TestScratch.path("read-dir")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let file = directory + "/bytes.bin"
        try Data([0, 1, 2, 0xFF]).write(to: URL(fileURLWithPath: file))
        #expect(try readWholeFile(file) == Data([0, 1, 2, 0xFF]))
        #expect(throws: ShadowError.fileNotFound(path: directory + "/none")) { try readWholeFile(directory + "/none") }
        #expect(throws: ShadowError.fileNotFound(path: file + "/below")) { try readWholeFile(file + "/below") }
        #expect(throws: ShadowError.unreadableFile(path: directory, reason: "Is a directory")) { try readWholeFile(directory) }
        #expect(ShadowError.unreadableFile(path: directory, reason: "Is a directory").description == "cannot read \(directory): Is a directory")
        #expect(throws: ShadowError.fileNotFound(path: "")) { try readWholeFile("") }
        #expect(ShadowError.fileNotFound(path: "").description == "a path is empty: no such file or directory")
        // A symbolic link to itself: there, and unreadable even for root (who reads chmod 000 files).
        let loop = directory + "/loop"
        try FileManager.default.createSymbolicLink(atPath: loop, withDestinationPath: loop)
        let looping = ShadowError.unreadableFile(path: loop, reason: "Too many levels of symbolic links")
        #expect(throws: looping) { try readWholeFile(loop) }
        #expect(throws: looping) { try MappedFile(path: loop) }
        if getuid() != 0 {
            try FileManager.default.setAttributes([.posixPermissions: 0], ofItemAtPath: file)
            let denied = ShadowError.unreadableFile(path: file, reason: "Permission denied")
            #expect(throws: denied) { try readWholeFile(file) }
            #expect(throws: denied) { try MappedFile(path: file) }
        }
    }

    @Test("a symbolic link loop is named as one where a path is only checked, not called missing")
    func symbolicLinkLoop() throws {
        let directory = TestScratch.path("loop-dir")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let file = directory + "/bytes.bin"
        try Data([1]).write(to: URL(fileURLWithPath: file))
        let loop = directory + "/loop"
        try FileManager.default.createSymbolicLink(atPath: loop, withDestinationPath: loop)
        let looping = ShadowError.unreadableFile(path: loop, reason: "Too many levels of symbolic links")
        #expect(throws: looping) { try fileKind(atPath: loop) }
        #expect(throws: looping) { try existingFileKind(atPath: loop) }
        // A safetensors checkpoint directory was checked with FileManager's fileExists: "no such file".
        #expect(throws: looping) { try SafetensorsCollection(directory: loop) }
        #expect(looping.description == "cannot read \(loop): Too many levels of symbolic links")
        #expect(try fileKind(atPath: file) == .regularFile)
        #expect(try fileKind(atPath: directory) == .directory)
        #expect(try fileKind(atPath: "/dev/null") == .other)
        #expect(try fileKind(atPath: directory + "/none") == nil)
        #expect(try fileKind(atPath: file + "/below") == nil)
        #expect(throws: ShadowError.fileNotFound(path: directory + "/none")) { try existingFileKind(atPath: directory + "/none") }
    }
}
