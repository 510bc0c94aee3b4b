#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file mapped read-only into memory. Weights are read straight from the page cache, so opening a
/// multi-gigabyte checkpoint costs nothing until a tensor is touched. (`Data(contentsOf:options:
/// .mappedIfSafe)` reads the whole file on Linux, DESIGN §8.)
///
/// The bytes stay valid for as long as this object lives; `deinit` unmaps them.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let byteCount: Int
    /// The first byte, or nil for an empty file (which `mmap` cannot map).
    public let baseAddress: UnsafeRawPointer?

    /// All bytes of the file.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: baseAddress, count: byteCount) }

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        if fd < 0 {
            let code = errno
            if code == ENOENT || code == ENOTDIR { throw ShadowError.fileNotFound(path: path) }
            throw ShadowError.unreadableFile(path: path, reason: Self.message(code))
        }
        defer { close(fd) }

        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw ShadowError.corruptFile(path: path, reason: "cannot stat: \(Self.message(errno))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw ShadowError.corruptFile(path: path, reason: "not a regular file")
        }
        byteCount = Int(info.st_size)
        if byteCount == 0 {
            baseAddress = nil
            return
        }
        // PROT_READ + MAP_PRIVATE: we never write, so pages are shared with the page cache.
        let mapped = mmap(nil, byteCount, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let mapped, mapped != MAP_FAILED else {
            throw ShadowError.corruptFile(path: path, reason: "cannot map \(byteCount) bytes: \(Self.message(errno))")
        }
        baseAddress = UnsafeRawPointer(mapped)
    }

    deinit {
        if let baseAddress { munmap(UnsafeMutableRawPointer(mutating: baseAddress), byteCount) }
    }

    /// Lets the kernel drop the resident pages wholly inside `bytes` (a slice of some mapping of
    /// ours). A loader calls it once a tensor is converted, so peak memory holds the converted
    /// weights plus one tensor rather than the converted weights plus the whole file. The bytes
    /// stay readable: a later access reads them from the page cache again.
    public static func dropPages(_ bytes: UnsafeRawBufferPointer) {
        #if os(Linux)
        guard let start = bytes.baseAddress, bytes.count > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let first = (Int(bitPattern: start) + page - 1) / page * page
        let end = (Int(bitPattern: start) + bytes.count) / page * page
        guard end > first, let pointer = UnsafeMutableRawPointer(bitPattern: first) else { return }
        _ = madvise(pointer, end - first, MADV_DONTNEED)
        #endif
    }

    private static func message(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "error \(code)" }
        return String(cString: text)
    }
}
