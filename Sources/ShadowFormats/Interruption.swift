import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Cooperative handling of SIGINT (Ctrl-C) and SIGTERM (what `kill`, Slurm and Kubernetes send
/// first) for long-running commands. While `handling` runs its body, the first such signal only
/// raises a flag that the work polls at safe points (between calibration samples, between
/// training epochs), so it can save what is finished and stop; a second one kills the process as
/// usual. Outside the body both keep their default action.
public enum Interruption {
    // A lock-free atomic: the only thing the signal handler touches besides `signal` itself,
    // both async-signal-safe.
    private static let flag = Atomic<Bool>(false)

    /// True once a handled signal arrived (or `request()` was called) inside `handling`.
    public static var requested: Bool { flag.load(ordering: .acquiring) }

    /// Raises the flag as a signal would (tests, and callers that stop work for other reasons).
    public static func request() { flag.store(true, ordering: .releasing) }

    /// Throws `ShadowError.interrupted` when an interruption was requested.
    public static func check(_ message: @autoclosure () -> String) throws {
        if requested { throw ShadowError.interrupted(message()) }
    }

    /// The signals `handling` has installed its handler for, one bit each: the handler puts all
    /// of them back to their default, so a second signal of either kind stops the process.
    private static let handled = Atomic<UInt64>(0)

    /// Runs `body` with the cooperative handler installed for `signals` (SIGINT and SIGTERM by
    /// default; `chat`, where Ctrl-C ends only a reply, takes SIGINT alone), restoring the
    /// previous actions after.
    public static func handling<T>(_ signals: [Int32] = [SIGINT, SIGTERM], _ body: () throws -> T) rethrows -> T {
        flag.store(false, ordering: .releasing)
        var previous: [Int32: sighandler_t?] = [:]
        var mask: UInt64 = 0
        for number in signals {
            let old = signal(number) { _ in
                Interruption.flag.store(true, ordering: .releasing)
                // The next one terminates: the user (or the scheduler) asked twice.
                let mask = Interruption.handled.load(ordering: .acquiring)
                for n in 1..<64 where mask & (1 << UInt64(n)) != 0 { signal(Int32(n), SIG_DFL) }
            }
            previous[number] = old
            // A parent that ignores the signal (nohup, `cmd &` in a script) means it: keep ignoring it.
            if unsafeBitCast(old, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self) {
                signal(number, SIG_IGN)
            } else {
                mask |= 1 << UInt64(number)
            }
            handled.store(mask, ordering: .releasing)
        }
        // A parent that spawned us from a thread blocking signals (Dispatch workers do) passes that
        // mask on, and a blocked signal would never arrive: accept them on this thread.
        var set = sigset_t()
        sigemptyset(&set)
        for number in signals { sigaddset(&set, number) }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        defer {
            handled.store(0, ordering: .releasing)
            for number in signals { signal(number, previous[number] ?? SIG_DFL) }
        }
        return try body()
    }
}
