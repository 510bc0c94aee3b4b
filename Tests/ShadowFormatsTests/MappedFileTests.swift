import Foundation
import Testing
@testable import ShadowFormats
import ShadowTestSupport

@Suite("Mapped files")
struct MappedFileTests {
    @Test("the SIGBUS handler's table names the mapped file holding an address, and forgets it when unmapped")
    func regionTable() throws {
        let path = TestScratch.path("mapped", suffix: ".bin")
        try Data(repeating: 7, count: 10_000).write(to: URL(fileURLWithPath: path))
        var file: MappedFile? = try MappedFile(path: path)
        let start = Int(bitPattern: file!.baseAddress!)
        #expect(MappedRegions.path(containing: start) == path)
        #expect(MappedRegions.path(containing: start + 9_999) == path)
        #expect(MappedRegions.path(containing: start + 10_000) != path)
        file = nil
        #expect(MappedRegions.path(containing: start) != path)
    }

    @Test("a path longer than a slot keeps its end, where the file name is")
    func longPath() throws {
        let directory = TestScratch.path(String(repeating: "d", count: 200))
        let folder = ([directory] + Array(repeating: String(repeating: "e", count: 200), count: 5)).joined(separator: "/")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let path = folder + "/model.bin"
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        let file = try MappedFile(path: path)
        let recorded = try #require(MappedRegions.path(containing: Int(bitPattern: file.baseAddress!)))
        #expect(recorded.utf8.count == MappedRegions.pathCapacity)
        #expect(recorded.hasPrefix("...") && recorded.hasSuffix("/model.bin"))
        withExtendedLifetime(file) {}
    }
}
