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
/// a mapping, so pipes and devices (`--text-file /dev/stdin`) work too.
public func readWholeFile(_ path: String) throws -> Data {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 {
        let code = errno
        if code == ENOENT || code == ENOTDIR { throw ShadowError.fileNotFound(path: path) }
        throw ShadowError.unreadableFile(path: path, reason: AtomicFile.describe(errno: code))
    }
    defer { close(fd) }
    var data = Data()
    var info = stat()
    if fstat(fd, &info) == 0 && info.st_size > 0 { data.reserveCapacity(Int(info.st_size)) }
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count == 0 { return data }
        if count < 0 {
            let code = errno
            if code == EINTR { continue }
            // A directory opens, and fails here with EISDIR ("Is a directory").
            throw ShadowError.unreadableFile(path: path, reason: AtomicFile.describe(errno: code))
        }
        data.append(contentsOf: buffer[..<count])
    }
}
