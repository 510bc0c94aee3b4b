import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Cooperative SIGINT handling for long-running commands. While `handlingSIGINT` runs its body,
/// the first SIGINT only raises a flag that the work polls at safe points (between calibration
/// samples, between training epochs), so it can save what is finished and stop; a second SIGINT
/// kills the process as usual. Outside the body SIGINT keeps its default action.
public enum Interruption {
    // A lock-free atomic: the only thing the signal handler touches besides `signal` itself,
    // both async-signal-safe.
    private static let flag = Atomic<Bool>(false)

    /// True once SIGINT arrived (or `request()` was called) inside `handlingSIGINT`.
    public static var requested: Bool { flag.load(ordering: .acquiring) }

    /// Raises the flag as SIGINT would (tests, and callers that stop work for other reasons).
    public static func request() { flag.store(true, ordering: .releasing) }

    /// Throws `ShadowError.interrupted` when an interruption was requested.
    public static func check(_ message: @autoclosure () -> String) throws {
        if requested { throw ShadowError.interrupted(message()) }
    }

    /// Runs `body` with the cooperative handler installed, restoring the default action after.
    public static func handlingSIGINT<T>(_ body: () throws -> T) rethrows -> T {
        flag.store(false, ordering: .releasing)
        let previous = signal(SIGINT) { _ in
            Interruption.flag.store(true, ordering: .releasing)
            // The next SIGINT terminates: the user asked twice.
            signal(SIGINT, SIG_DFL)
        }
        // A parent that ignores SIGINT (nohup, `cmd &` in a script) means it: keep ignoring it.
        let ignored = unsafeBitCast(previous, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self)
        if ignored { signal(SIGINT, SIG_IGN) }
        // A parent that spawned us from a thread blocking signals (Dispatch workers do) passes that
        // mask on, and a blocked SIGINT would never arrive: accept it on this thread.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        defer {
            signal(SIGINT, ignored ? SIG_IGN : SIG_DFL)
        }
        return try body()
    }
}
