import CHalf

/// The process's memory as the allocator holds it.
public enum ProcessMemory {
    /// Returns the heap's free pages to the system. A model load frees many conversion buffers
    /// between the weights it keeps; without this they stay resident (and count in peak RSS).
    public static func releaseFreeHeap() { chalf_release_free_heap() }
}
