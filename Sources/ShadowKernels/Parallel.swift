import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How many threads the kernels use. Set once by the CLI (`-t/--threads`); defaults to all cores.
public enum Threads {
    nonisolated(unsafe) private static var _count: Int = defaultCount
    public static var defaultCount: Int { max(1, ProcessInfoCores.count) }
    public static var count: Int { _count }
    public static func set(_ n: Int) {
        _count = max(1, n)
        BLAS.setThreads(_count)
    }

    private static let pools = Mutex<[Int: WorkerPool]>([:])

    /// The pool with `count - 1` workers (the caller is the last thread), made on first use.
    static var pool: WorkerPool {
        let count = _count
        return pools.withLock { pools in
            if let pool = pools[count] { return pool }
            let pool = WorkerPool(workers: count - 1)
            pools[count] = pool
            return pool
        }
    }
}

enum ProcessInfoCores {
    static var count: Int {
        Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    }
}

/// Splits `0..<count` into `Threads.count` contiguous chunks (rounded to `granularity`) and runs
/// `body(range)` on each, in parallel. Work smaller than `minimumPerThread` runs inline.
@inline(__always)
public func parallelChunks(_ count: Int, granularity: Int = 1, minimumPerThread: Int = 1,
                           _ body: (Range<Int>) -> Void) {
    let threads = min(Threads.count, max(1, count / max(minimumPerThread, 1)))
    if threads <= 1 || count <= granularity {
        body(0..<count)
        return
    }
    let units = (count + granularity - 1) / granularity
    let perThread = (units + threads - 1) / threads
    // The chunks are disjoint, so sharing the closure across threads is safe.
    Threads.pool.run(parts: threads) { t in
        let start = t * perThread * granularity
        let end = min(count, (t + 1) * perThread * granularity)
        if start < end { body(start..<end) }
    }
}

/// Runs `body(i)` for every i in `0..<count`, spread over the threads.
@inline(__always)
public func parallelFor(_ count: Int, _ body: (Int) -> Void) {
    parallelChunks(count) { range in for i in range { body(i) } }
}
