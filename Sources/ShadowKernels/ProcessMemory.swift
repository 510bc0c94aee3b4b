import CHalf
import Foundation

/// The process's memory as the allocator holds it.
public enum ProcessMemory {
    /// Returns the heap's free pages to the system. A model load frees many conversion buffers
    /// between the weights it keeps; without this they stay resident (and count in peak RSS).
    public static func releaseFreeHeap() { chalf_release_free_heap() }

    /// Memory the kernel could still hand out without swapping (`MemAvailable`), nil where
    /// /proc/meminfo does not say.
    public static var availableBytes: Int? {
        guard let info = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
              let line = info.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
              let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return nil }
        return kilobytes * 1024
    }
}
