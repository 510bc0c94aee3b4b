import Foundation
import Synchronization
import CHalf

/// Persistent worker threads for the decode kernels. Decode issues a few hundred small parallel
/// loops per token; waking threads through Dispatch for each costs tens of microseconds, so the
/// workers spin briefly between jobs and only sleep after a stretch of idleness (prefill hands its
/// GEMMs to OpenBLAS's own threads, which must not fight spinning workers for the cores).
final class WorkerPool: @unchecked Sendable {
    let workerCount: Int
    private let generation = Atomic<Int>(0)
    private let pending = Atomic<Int>(0)
    private let sleepers = Atomic<Int>(0)
    private let wake = DispatchSemaphore(value: 0)
    private var job: ((Int) -> Void)?
    /// One job at a time; a second caller (another thread, or a nested loop) runs its parts inline.
    private let busy = Mutex<Bool>(false)
    private var parts = 0

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
        let acquired = busy.withLock { busy in
            if busy { return false }
            busy = true
            return true
        }
        guard acquired else {
            for part in 0..<parts { body(part) }
            return
        }
        defer { busy.withLock { $0 = false } }
        withoutActuallyEscaping(body) { body in
            job = body
            self.parts = parts
            pending.store(parts - 1, ordering: .releasing)
            generation.add(1, ordering: .releasing)
            let sleeping = sleepers.load(ordering: .acquiring)
            for _ in 0..<sleeping { wake.signal() }
            body(0)
            while pending.load(ordering: .acquiring) > 0 { spinPause() }
            job = nil
        }
    }

    private func workerLoop(_ index: Int) {
        var seen = 0
        while true {
            var spins = 0
            var current = generation.load(ordering: .acquiring)
            while current == seen {
                spins += 1
                if spins > Self.spinLimit {
                    sleepers.add(1, ordering: .relaxed)
                    // Re-check after announcing sleep so a job posted in between is not missed.
                    if generation.load(ordering: .acquiring) == seen { wake.wait() }
                    sleepers.subtract(1, ordering: .relaxed)
                    spins = 0
                } else {
                    spinPause()
                }
                current = generation.load(ordering: .acquiring)
            }
            seen = current
            if index < parts, let job { job(index) }
            if index < parts { pending.subtract(1, ordering: .releasing) }
        }
    }

    @inline(__always)
    private func spinPause() { chalf_pause() }
}
