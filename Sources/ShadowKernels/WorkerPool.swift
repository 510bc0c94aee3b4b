import Foundation
import Synchronization
import CHalf

/// Persistent worker threads for the decode kernels. Decode issues a few hundred small parallel
/// loops per token; waking threads through Dispatch for each costs tens of microseconds, so the
/// workers spin briefly between jobs and only sleep after a stretch of idleness (prefill hands its
/// GEMMs to OpenBLAS's own threads, which must not fight spinning workers for the cores).
final class WorkerPool: @unchecked Sendable {
    let workerCount: Int
    /// The posted job: its generation in the high bits and its number of parts in the low ones,
    /// one word so a worker never pairs a generation with another job's part count.
    private let posted = Atomic<Int>(0)
    private static let partBits = 20
    private let pending = Atomic<Int>(0)
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

    /// Spins this many times before a worker goes to sleep (about 50 µs).
    private static let spinLimit = 20_000

    init(workers: Int) {
        workerCount = workers
        for index in 0..<workers {
            let thread = Thread { [unowned self] in self.workerLoop(index + 1) }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Runs `body(part)` for part in 0..<parts, part 0 on the calling thread; returns when all finish.
    func run(parts: Int, _ body: (Int) -> Void) {
        precondition(parts <= workerCount + 1, "more parts than threads: the extra parts would never run")
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            for part in 0..<parts { body(part) }
            return
        }
        defer { busy.store(false, ordering: .releasing) }
        withoutActuallyEscaping(body) { body in
            job = body
            pending.store(parts - 1, ordering: .relaxed)
            generation &+= 1
            // Sequentially consistent with the sleepers count: either a worker about to sleep sees
            // this job, or we see it asleep and wake it (acquire/release alone allows both to miss).
            posted.store(generation << Self.partBits | parts, ordering: .sequentiallyConsistent)
            let sleeping = sleepers.load(ordering: .sequentiallyConsistent)
            for _ in 0..<sleeping { wake.signal() }
            body(0)
            while pending.load(ordering: .acquiring) > 0 { spinPause() }
            job = nil
        }
    }

    private func workerLoop(_ index: Int) {
        var seen = 0
        let mask = 1 << Self.partBits - 1
        while true {
            var spins = 0
            var word = posted.load(ordering: .acquiring)
            while word >> Self.partBits == seen {
                spins += 1
                if spins > Self.spinLimit {
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
            // Workers beyond this job's parts skip it without touching `job`.
            if index < word & mask {
                job!(index)
                pending.subtract(1, ordering: .releasing)
            }
        }
    }

    @inline(__always)
    private func spinPause() { chalf_pause() }
}
