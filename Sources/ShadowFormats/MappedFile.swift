import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file mapped read-only into memory. Weights are read straight from the page cache, so opening a
/// multi-gigabyte checkpoint costs nothing until a tensor is touched. (`Data(contentsOf:options:
/// .mappedIfSafe)` reads the whole file on Linux, DESIGN §8.)
///
/// The bytes stay valid for as long as this object lives; `deinit` unmaps them. A file that
/// shrinks while mapped makes the next read of a lost page raise SIGBUS; the command line installs
/// `installTruncationHandler()`, which turns that into a one-line error naming the file.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let byteCount: Int
    /// The first byte, or nil for an empty file (which `mmap` cannot map).
    public let baseAddress: UnsafeRawPointer?
    /// Where the SIGBUS handler finds this mapping's path; nil when unmapped or the table was full.
    private let region: Int?

    /// All bytes of the file.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: baseAddress, count: byteCount) }

    public init(path: String) throws {
        self.path = path
        // O_NONBLOCK: a named pipe given as a model opens at once and is refused below, rather
        // than waiting for a writer; on a regular file it changes nothing.
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 {
            let code = errno
            if code == ENOENT || code == ENOTDIR { throw ShadowError.fileNotFound(path: path) }
            throw ShadowError.unreadableFile(path: path, reason: AtomicFile.describe(errno: code))
        }
        defer { close(fd) }

        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw ShadowError.corruptFile(path: path, reason: "cannot stat: \(AtomicFile.describe(errno: errno))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw ShadowError.corruptFile(path: path, reason: "not a regular file")
        }
        byteCount = Int(info.st_size)
        if byteCount == 0 {
            baseAddress = nil
            region = nil
            return
        }
        // PROT_READ + MAP_PRIVATE: we never write, so pages are shared with the page cache.
        let mapped = mmap(nil, byteCount, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let mapped, mapped != MAP_FAILED else {
            throw ShadowError.corruptFile(path: path, reason: "cannot map \(byteCount) bytes: \(AtomicFile.describe(errno: errno))")
        }
        baseAddress = UnsafeRawPointer(mapped)
        region = MappedRegions.add(start: Int(bitPattern: mapped), count: byteCount, path: path)
        // Tests only (ShadowCLITests, "a model file truncated while mapped ..."): shrink the file
        // just mapped, as another process might, so the SIGBUS handler runs at a known moment.
        if let victim = getenv("SHADOWLLM_TEST_TRUNCATE_AFTER_MAPPING"), String(cString: victim) == path {
            _ = truncate(path, 0)
        }
    }

    deinit {
        if let region { MappedRegions.remove(region) } else if baseAddress != nil { MappedRegions.removeUntracked() }
        if let baseAddress { munmap(UnsafeMutableRawPointer(mutating: baseAddress), byteCount) }
    }

    /// Makes SIGBUS inside a mapped file print `error: PATH: the file shrank while in use …` and
    /// exit with status 1 instead of killing the process with a core dump. A SIGBUS anywhere else
    /// goes to the handler that was there before. Call once, early (the `shadowllm` entry point);
    /// later calls do nothing.
    public static func installTruncationHandler() {
        MappedRegions.install()
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
}

// MARK: - The SIGBUS handler's table

/// The address ranges and paths of the files mapped now, kept where a signal handler can read them:
/// one buffer allocated once, fixed-size slots, no Swift strings. A handler may call only
/// async-signal-safe functions (no malloc, no locks), so it finds the faulting address's slot and
/// writes the path with write(2).
///
/// Slot layout (bytes): start, end (0 = free), path length (3 × Int), then the path's UTF-8.
/// Slots are claimed and freed under `lock`; a slot's `end` is written last on claiming and first
/// on freeing, with fences around the rest, so the handler never reads a half-written path.
enum MappedRegions {
    // Computed, not stored: a stored static is a lazy global in a debug build, and the handler
    // must not run an initialiser.
    /// More files than any command maps at once (a sharded checkpoint, a predictor, trace chunks).
    static var slotCount: Int { 256 }
    /// Longer paths keep their last bytes, where the file name is.
    static var pathCapacity: Int { 1000 }
    static var slotSize: Int { 3 * MemoryLayout<Int>.size + pathCapacity }
    /// Word 0 counts mappings that found no free slot; the slots follow.
    nonisolated(unsafe) static let table: UnsafeMutableRawPointer = {
        let bytes = MemoryLayout<Int>.size + slotCount * slotSize
        let table = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: MemoryLayout<Int>.alignment)
        table.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        return table
    }()
    static let lock = NSLock()
    /// The SIGBUS action before ours, restored for faults outside our mappings. A pointer, not a
    /// variable: the handler must not go through Swift's exclusivity checks.
    nonisolated(unsafe) static let previous: UnsafeMutablePointer<sigaction> = {
        let previous = UnsafeMutablePointer<sigaction>.allocate(capacity: 1)
        previous.initialize(to: sigaction())
        return previous
    }()
    static let installed = Atomic<Bool>(false)
    /// Set by the first thread that reports: threads faulting at once print one line, not several.
    static let reporting = Atomic<Bool>(false)

    static func slot(_ index: Int) -> UnsafeMutableRawPointer { table + MemoryLayout<Int>.size + index * slotSize }
    static var untracked: UnsafeMutablePointer<Int> { table.assumingMemoryBound(to: Int.self) }

    /// Records a mapping; returns its slot, or nil when every slot is taken.
    static func add(start: Int, count: Int, path: String) -> Int? {
        lock.lock()
        defer { lock.unlock() }
        for index in 0..<slotCount {
            let words = slot(index).assumingMemoryBound(to: Int.self)
            guard words[1] == 0 else { continue }
            var utf8 = Array(path.utf8)
            if utf8.count > pathCapacity { utf8 = Array("...".utf8) + utf8.suffix(pathCapacity - 3) }
            words[0] = start
            words[2] = utf8.count
            utf8.withUnsafeBytes { (slot(index) + 3 * MemoryLayout<Int>.size).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            atomicMemoryFence(ordering: .releasing)
            words[1] = start + count
            return index
        }
        untracked.pointee += 1
        return nil
    }

    static func removeUntracked() {
        lock.lock()
        defer { lock.unlock() }
        untracked.pointee -= 1
    }

    static func remove(_ index: Int) {
        lock.lock()
        defer { lock.unlock() }
        slot(index).assumingMemoryBound(to: Int.self)[1] = 0
        atomicMemoryFence(ordering: .sequentiallyConsistent)
    }

    /// The slot whose mapping holds `address`, if any. Async-signal-safe: loads only.
    static func find(_ address: Int) -> Int? {
        for index in 0..<slotCount {
            let words = slot(index).assumingMemoryBound(to: Int.self)
            let end = words[1]
            atomicMemoryFence(ordering: .acquiring)
            if end != 0 && words[0] <= address && address < end { return index }
        }
        return nil
    }

    /// The path recorded for the mapping that holds `address` (tests; the handler writes the bytes
    /// directly). Under the lock, unlike the handler, so ThreadSanitizer sees no race.
    static func path(containing address: Int) -> String? {
        lock.lock()
        defer { lock.unlock() }
        guard let index = find(address) else { return nil }
        let length = slot(index).assumingMemoryBound(to: Int.self)[2]
        return String(decoding: UnsafeRawBufferPointer(start: slot(index) + 3 * MemoryLayout<Int>.size, count: length), as: UTF8.self)
    }

    static func install() {
        #if canImport(Glibc)
        guard !installed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        // All initialised now: the handler must not run a lazy initialiser.
        _ = table
        _ = previous
        _ = reporting.load(ordering: .relaxed)
        var action = sigaction()
        action.__sigaction_handler.sa_sigaction = { _, info, _ in MappedRegions.busError(info) }
        action.sa_flags = SA_SIGINFO
        sigemptyset(&action.sa_mask)
        sigaction(SIGBUS, &action, previous)
        #endif
    }

    #if canImport(Glibc)
    /// Runs in the signal handler: only loads, one atomic exchange, write(2), pause(2), _exit(2),
    /// sigaction(2) and raise(3).
    static func busError(_ info: UnsafeMutablePointer<siginfo_t>?) {
        func put(_ text: StaticString) { _ = Glibc.write(2, text.utf8Start, text.utf8CodeUnitCount) }
        let address = Int(bitPattern: info?.pointee._sifields._sigfault.si_addr)
        let ours = find(address)
        if ours != nil || untracked.pointee > 0, reporting.exchange(true, ordering: .relaxed) {
            while true { pause() }   // another thread is reporting and will end the process
        }
        if let index = ours {
            put("error: ")
            let words = slot(index).assumingMemoryBound(to: Int.self)
            _ = Glibc.write(2, slot(index) + 3 * MemoryLayout<Int>.size, min(words[2], pathCapacity))
            put(": a page of the mapped file could not be read (it shrank while in use, or the disk failed)\n")
            _exit(1)
        }
        if untracked.pointee > 0 {
            put("error: a page of a mapped file could not be read (it shrank while in use, or the disk failed)\n")
            _exit(1)
        }
        // Not a mapped file of ours: the previous action takes it. A fault repeats when the handler
        // returns; a SIGBUS sent by another process (si_code ≤ 0) is raised again.
        sigaction(SIGBUS, previous, nil)
        if (info?.pointee.si_code ?? 0) <= 0 { raise(SIGBUS) }
    }
    #endif
}
