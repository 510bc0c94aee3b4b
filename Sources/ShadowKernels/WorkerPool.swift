import Foundation
import Synchronization
import CHalf

/// Persistent worker threads for the decode kernels. Decode issues a few hundred small parallel
/// loops per token; waking threads through Dispatch for each costs tens of microseconds, so the
/// workers spin briefly between jobs and only sleep after a stretch of idleness (prefill hands its
/// GEMMs to OpenBLAS's own threads, which must not fight spinning workers for the cores).
/// Parts are claimed, not assigned: whoever is running takes the next unclaimed part, so when the
/// machine is oversubscribed and a worker waits for a core, the caller does its part instead of
/// spinning until the worker is scheduled (which made a 2-thread evaluation 3× slower than a
/// 1-thread one beside another busy process).
final class WorkerPool: @unchecked Sendable {
    let workerCount: Int
    /// The posted job: its generation in the high bits and its number of parts in the low ones,
    /// one word so a worker never pairs a generation with another job's part count.
    private let posted = Atomic<Int>(0)
    private static let partBits = 20
    private let pending = Atomic<Int>(0)
    /// The running job's generation in the high bits and how many of its parts are claimed.
    private let claims = Atomic<Int>(0)
    private let sleepers = Atomic<Int>(0)
    private let wake = DispatchSemaphore(value: 0)
    /// Written only while no worker runs a part (before posting, after `pending` reaches 0).
    private var job: ((Int) -> Void)?
    /// One job at a time; a second caller (another thread, or a nested loop) runs its parts inline.
    /// An atomic try-lock rather than `Mutex`: nobody waits for it, and ThreadSanitizer sees
    /// atomics compiled into this module (Mutex's futex code on Linux is invisible to it).
    private let busy = Atomic<Bool>(false)
    /// Owned by whoever holds `busy`.
    private var generation = 0

    /// Spins this many times before a worker goes to sleep: 50 µs to 1 ms, as long as the CPU's
    /// pause instruction takes (0.86 ms on a Zen 3 VM, where a pause takes 43 ns). None when there
    /// are more threads than cores: a spinning thread then holds a core that a thread with work
    /// waits for (`--threads 256` on 2 cores spent minutes on what takes a second).
    let spinLimit: Int

    init(workers: Int, cores: Int = ProcessInfoCores.count) {
        workerCount = workers
        spinLimit = workers + 1 <= cores ? 20_000 : 0
        for _ in 0..<workers {
            let thread = Thread { [unowned self] in self.workerLoop() }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Runs `body(part)` for part in 0..<parts on the calling thread and the workers (each part
    /// exactly once, on whichever thread claims it); returns when all finish.
    func run(parts: Int, _ body: (Int) -> Void) {
        // Parts beyond the threads would still run (the caller claims them too), but the claim
        // word counts them in its low bits. A guard: this module builds -Ounchecked.
        guard parts >= 0 && parts < 1 << Self.partBits else { fatalError("\(parts) parts: at most \(1 << Self.partBits - 1)") }
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            for part in 0..<parts { body(part) }
            return
        }
        defer { busy.store(false, ordering: .releasing) }
        withoutActuallyEscaping(body) { body in
            job = body
            pending.store(parts, ordering: .relaxed)
            generation &+= 1
            claims.store(generation << Self.partBits, ordering: .releasing)
            // Sequentially consistent with the sleepers count: either a worker about to sleep sees
            // this job, or we see it asleep and wake it (acquire/release alone allows both to miss).
            posted.store(generation << Self.partBits | parts, ordering: .sequentiallyConsistent)
            // Only as many as there are parts for (a short loop is split into fewer parts than threads).
            let sleeping = sleepers.load(ordering: .sequentiallyConsistent)
            for _ in 0..<min(sleeping, max(parts - 1, 0)) { wake.signal() }
            while let part = claim(generation: generation, parts: parts) {
                body(part)
                pending.subtract(1, ordering: .relaxed)
            }
            // The parts still running are on workers that hold a core: spin, yielding it now and then.
            var spins = 0
            while pending.load(ordering: .acquiring) > 0 {
                spins += 1
                if spins > spinLimit { sched_yield() } else { spinPause() }
            }
            job = nil
        }
    }

    private func workerLoop() {
        var seen = 0
        let mask = 1 << Self.partBits - 1
        while true {
            var spins = 0
            var word = posted.load(ordering: .acquiring)
            while word >> Self.partBits == seen {
                spins += 1
                if spins > spinLimit {
                    sleepers.add(1, ordering: .sequentiallyConsistent)
                    // Re-check after announcing sleep so a job posted in between is not missed.
                    if posted.load(ordering: .sequentiallyConsistent) >> Self.partBits == seen { wake.wait() }
                    sleepers.subtract(1, ordering: .relaxed)
                    spins = 0
                } else {
                    spinPause()
                }
                word = posted.load(ordering: .acquiring)
            }
            seen = word >> Self.partBits
            // A worker that finds every part claimed skips the job without touching `job`; one
            // that wakes late finds its generation's parts all claimed and cannot take a later one's.
            while let part = claim(generation: seen, parts: word & mask) {
                job!(part)
                pending.subtract(1, ordering: .releasing)
            }
        }
    }

    /// The next unclaimed part of job `generation` (of `parts`), or nil when all are taken or
    /// another job has been posted since.
    private func claim(generation: Int, parts: Int) -> Int? {
        let mask = 1 << Self.partBits - 1
        var value = claims.load(ordering: .acquiring)
        while value >> Self.partBits == generation && value & mask < parts {
            let (exchanged, original) = claims.compareExchange(expected: value, desired: value + 1,
                                                               ordering: .acquiringAndReleasing)
            if exchanged { return value & mask }
            value = original
        }
        return nil
    }

    @inline(__always)
    private func spinPause() { chalf_pause() }
}
