#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The bytes of a file the user named (a text, a JSON or config file), read whole.
///
/// Foundation's `contents(atPath:)` answers nil for every failure, which callers reported as a
/// missing file; here "no such file" means nothing is there, and any other failure names the file
/// and the system's reason ("cannot read F: Permission denied"). Reads with `read(2)` rather than
/// a mapping, so pipes and devices (`--text-file /dev/stdin`) work too when `acceptingStreams`
/// says the caller reads a user's text; more than `limit` bytes (an endless device such as
/// /dev/zero) is an error rather than a machine out of memory.
///
/// Without `acceptingStreams` (configs, manifests, states, scores: files a program wrote) only a
/// regular file is read: a named pipe there is refused at once, where a blocking open would wait
/// for a writer past any Ctrl-C or SIGTERM, which stop long commands only at their safe points.
public func readWholeFile(_ path: String, limit: Int = 1 << 30, acceptingStreams: Bool = false) throws -> Data {
    let fd = open(path, O_RDONLY | O_CLOEXEC | (acceptingStreams ? 0 : O_NONBLOCK))
    if fd < 0 {
        let code = errno
        if code == ENOENT || code == ENOTDIR { throw ShadowError.fileNotFound(path: path) }
        throw ShadowError.unreadableFile(path: path, reason: AtomicFile.describe(errno: code))
    }
    defer { close(fd) }
    var data = Data()
    var info = stat()
    guard fstat(fd, &info) == 0 else {
        throw ShadowError.unreadableFile(path: path, reason: AtomicFile.describe(errno: errno))
    }
    let kind = info.st_mode & S_IFMT
    // A directory opens, and fails below with EISDIR ("Is a directory").
    if !acceptingStreams && kind != S_IFREG && kind != S_IFDIR {
        throw ShadowError.corruptFile(path: path, reason: "not a regular file")
    }
    if info.st_size > 0 {
        guard info.st_size <= limit else { throw tooLarge(path, limit: limit) }
        data.reserveCapacity(Int(info.st_size))
    }
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count == 0 { return data }
        if count < 0 {
            let code = errno
            if code == EINTR { continue }
            throw ShadowError.unreadableFile(path: path, reason: AtomicFile.describe(errno: code))
        }
        data.append(contentsOf: buffer[..<count])
        if data.count > limit { throw tooLarge(path, limit: limit) }
    }
}

private func tooLarge(_ path: String, limit: Int) -> ShadowError {
    .unreadableFile(path: path, reason: "longer than \(limit >> 20) MiB, more than any text or JSON file this tool reads")
}

/// Whether anything is at `path` itself, a dangling symbolic link included: what decides whether
/// a failed run removes what it made, or refuses to put something in its place. Unlike
/// FileManager's `fileExists`, a path that cannot be looked at (a directory we may not search)
/// throws, naming it, rather than passing for absent. (Whether to continue earlier work follows
/// links: `fileKind(atPath:)`.)
public func entryExists(atPath path: String) throws -> Bool {
    var info = stat()
    guard lstat(path, &info) == 0 else {
        let code = errno
        if code == ENOENT || code == ENOTDIR { return false }
        throw ShadowError.unreadableFile(path: path, reason: AtomicFile.describe(errno: code))
    }
    return true
}

/// What a path names, after following symbolic links.
public enum FileKind: Sendable, Equatable {
    case regularFile, directory, other
}

/// What is at `path`, or nil when nothing is (no such entry, or a parent that is not a directory).
///
/// FileManager's `fileExists` answers false for every failure of stat(2), which callers reported
/// as "no such file": a symbolic link loop (ELOOP), a name too long or a directory we may not
/// search were all called missing. Here those throw, naming the path and the system's reason.
public func fileKind(atPath path: String) throws -> FileKind? {
    var info = stat()
    guard stat(path, &info) == 0 else {
        let code = errno
        if code == ENOENT || code == ENOTDIR { return nil }
        throw ShadowError.unreadableFile(path: path, reason: AtomicFile.describe(errno: code))
    }
    switch info.st_mode & S_IFMT {
    case S_IFREG: return .regularFile
    case S_IFDIR: return .directory
    default: return .other
    }
}

/// What is at `path`; throws `ShadowError.fileNotFound` when nothing is, and the system's reason
/// when it cannot tell.
public func existingFileKind(atPath path: String) throws -> FileKind {
    guard let kind = try fileKind(atPath: path) else { throw ShadowError.fileNotFound(path: path) }
    return kind
}

/// `bytes` read from `path` as text, byte for byte (a leading byte-order mark kept, as the
/// reference tokenizers encode it); throws naming the file and, when its first bytes tell, what
/// it is instead (`notTextForm`). Every reason reads after the path ("… is gzip-compressed").
public func utf8Text(_ bytes: [UInt8], path: String) throws -> String {
    if let form = notTextForm(bytes) { throw ShadowError.corruptFile(path: path, reason: form) }
    guard let text = String(validating: bytes, as: UTF8.self) else {
        throw ShadowError.corruptFile(path: path, reason: "is not valid UTF-8 text")
    }
    return text
}

/// Whether `bytes` open as a safetensors file does: a little-endian 8-byte header length that
/// the file holds, then the header's "{".
func isSafetensors(_ bytes: [UInt8]) -> Bool {
    guard bytes.count > 9, bytes[8] == UInt8(ascii: "{") else { return false }
    let length = bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    return length >= 2 && length <= UInt64(bytes.count - 8)
}

/// What a file is when its first bytes say it is no UTF-8 text (a compressed release, Parquet,
/// UTF-16), so that the error says so instead of a parse error on line 1. The four-letter marks
/// of GGUF and Parquet also begin texts ("GGUF is llama.cpp's format"), so each must come with
/// the binary field that follows it in such a file.
public func notTextForm(_ bytes: [UInt8]) -> String? {
    func starts(_ magic: [UInt8]) -> Bool { bytes.starts(with: magic) }
    let decompress = "; decompress it first"
    if starts([0x1F, 0x8B]) { return "is gzip-compressed\(decompress) (gunzip)" }
    if starts(Array("BZh".utf8)), bytes.count >= 10, (UInt8(ascii: "1")...UInt8(ascii: "9")).contains(bytes[3]),
       bytes[4..<10].elementsEqual([0x31, 0x41, 0x59, 0x26, 0x53, 0x59]) { return "is bzip2-compressed\(decompress) (bunzip2)" }
    if starts([0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) { return "is xz-compressed\(decompress) (unxz)" }
    if starts([0x28, 0xB5, 0x2F, 0xFD]) { return "is zstd-compressed\(decompress) (unzstd)" }
    if starts([0x50, 0x4B, 0x03, 0x04]) { return "is a zip archive; extract the file from it first" }
    // Parquet: PAR1, the pages, the footer, its length (4 bytes, little-endian), PAR1 again.
    if starts(Array("PAR1".utf8)), bytes.count >= 12, bytes.suffix(4).elementsEqual("PAR1".utf8),
       bytes[(bytes.count - 8)..<(bytes.count - 4)].reversed().reduce(0, { $0 << 8 | Int($1) }) <= bytes.count - 12 {
        return "is a Parquet file; export it as JSON Lines first (datasets' to_json, or pandas' to_json(orient=\"records\", lines=True))"
    }
    if starts([0xFF, 0xFE]) || starts([0xFE, 0xFF]) { return "is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8" }
    // GGUF: the magic, then a 4-byte version (1 to 3: NULs in either byte order).
    if starts(Array("GGUF".utf8)), bytes.count >= 8, bytes[4..<8].contains(0) { return "is a GGUF model file, not text" }
    if isSafetensors(bytes) { return "is a safetensors file (tensors: model weights or a predictor), not text" }
    // Without a mark, UTF-16 of mostly ASCII text has a NUL beside every letter: valid UTF-8,
    // but no text anyone means (a quarter of the first bytes NUL; text has none).
    let head = bytes.prefix(64)
    if head.count >= 4, head.count(where: { $0 == 0 }) * 4 >= head.count {
        return "holds NUL bytes (a binary file, or UTF-16 without a byte-order mark?); text must be UTF-8"
    }
    return nil
}
