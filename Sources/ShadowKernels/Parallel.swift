import Dispatch
import Foundation
import Synchronization
import CHalf
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How many threads the kernels use: set by the CLI (`-t/--threads`; bench sets each count of a
/// list in turn, keeping one worker pool per count); defaults to every core this process may run on.
public enum Threads {
    // Atomic: tests (and library users) may set it while other threads run kernels.
    private static let _count = Atomic<Int>(defaultCount)
    public static var defaultCount: Int { max(1, ProcessInfoCores.count) }
    public static var count: Int { _count.load(ordering: .relaxed) }
    public static func set(_ n: Int) {
        _count.store(max(1, n), ordering: .relaxed)
    }

    // NSLock (a pthread mutex) rather than `Mutex`, whose Linux futex code ThreadSanitizer cannot see.
    nonisolated(unsafe) private static var pools: [Int: WorkerPool] = [:]
    private static let poolsLock = NSLock()

    /// The pool with `count - 1` workers (the caller is the last thread), made on first use.
    /// Callers pass the count they split work by, so a concurrent `set` cannot hand them a
    /// pool with fewer threads than parts.
    static func pool(threads count: Int) -> WorkerPool {
        poolsLock.withLock {
            if let pool = pools[count] { return pool }
            let pool = WorkerPool(workers: count - 1)
            pools[count] = pool
            return pool
        }
    }
}

enum ProcessInfoCores {
    /// The CPUs this process may run on (its affinity: `taskset`, a container's cpuset), else the
    /// online ones.
    static var count: Int {
        let allowed = Int(chalf_allowed_cpus())
        return allowed > 0 ? allowed : Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    }
}

/// Splits `0..<count` into `Threads.count` contiguous chunks (rounded to `granularity`) and runs
/// `body(range)` on each, in parallel. Work smaller than `minimumPerThread` runs inline.
@inline(__always)
public func parallelChunks(_ count: Int, granularity: Int = 1, minimumPerThread: Int = 1,
                           _ body: (Range<Int>) -> Void) {
    let available = Threads.count
    let threads = min(available, max(1, count / max(minimumPerThread, 1)))
    if threads <= 1 || count <= granularity {
        body(0..<count)
        return
    }
    let units = (count + granularity - 1) / granularity
    let perThread = (units + threads - 1) / threads
    // The chunks are disjoint, so sharing the closure across threads is safe.
    Threads.pool(threads: available).run(parts: threads) { t in
        let start = t * perThread * granularity
        let end = min(count, (t + 1) * perThread * granularity)
        if start < end { body(start..<end) }
    }
}
