#if canImport(Accelerate)
import Accelerate
#else
import CBLAS
#endif
import CHalf

/// Thin wrappers over CBLAS sgemm. Prefill sends many tokens at once through these; a single
/// token never goes through sgemm (DESIGN §8: 4.5× slower than a SIMD GEMV).
public enum BLAS {
    /// C[m, n] (+)= A[m, k] · B[n, k]ᵀ — activations times a `[out, in]` weight matrix.
    public static func gemmABt(_ c: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>,
                               _ b: UnsafePointer<Float>, m: Int, n: Int, k: Int,
                               lda: Int? = nil, ldb: Int? = nil, ldc: Int? = nil, accumulate: Bool = false) {
        let ldb = ldb ?? k
        splitColumns(m: m, n: n, k: k) { cols in
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(cols.count), Int32(k), 1,
                        a, Int32(lda ?? k), b + cols.lowerBound * ldb, Int32(ldb), accumulate ? 1 : 0,
                        c + cols.lowerBound, Int32(ldc ?? n))
        }
    }

    /// C[m, n] (+)= A[m, k] · B[k, n] — activations times a transposed (`[in, out]`) weight matrix.
    public static func gemmAB(_ c: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>,
                              _ b: UnsafePointer<Float>, m: Int, n: Int, k: Int,
                              lda: Int? = nil, ldb: Int? = nil, ldc: Int? = nil, accumulate: Bool = false) {
        splitColumns(m: m, n: n, k: k) { cols in
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(cols.count), Int32(k), 1,
                        a, Int32(lda ?? k), b + cols.lowerBound, Int32(ldb ?? n), accumulate ? 1 : 0,
                        c + cols.lowerBound, Int32(ldc ?? n))
        }
    }

    /// C[m, n] (+)= A[k, m]ᵀ · B[k, n] — used by backward passes (weight gradients).
    public static func gemmAtB(_ c: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>,
                               _ b: UnsafePointer<Float>, m: Int, n: Int, k: Int,
                               lda: Int? = nil, ldb: Int? = nil, ldc: Int? = nil, accumulate: Bool = false) {
        splitColumns(m: m, n: n, k: k) { cols in
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(m), Int32(cols.count), Int32(k), 1,
                        a, Int32(lda ?? m), b + cols.lowerBound, Int32(ldb ?? n), accumulate ? 1 : 0,
                        c + cols.lowerBound, Int32(ldc ?? n))
        }
    }

    /// Runs one GEMM as column slices on our own worker threads, each slice a single-threaded
    /// sgemm. OpenBLAS's threads and our spinning decode workers would otherwise fight for the
    /// same cores between every GEMM and every small vector op of a prefill.
    @inline(__always)
    private static func splitColumns(m: Int, n: Int, k: Int, _ body: (Range<Int>) -> Void) {
        _ = singleThreaded
        let slices = sliceCount(m: m, n: n, k: k), units = (n + 15) / 16
        parallelChunks(slices) { range in
            for slice in range { body(min(n, slice * units / slices * 16)..<min(n, (slice + 1) * units / slices * 16)) }
        }
    }

    /// One slice per core this process may use (at most 64), whatever `--threads` says.
    static let maximumSlices = min(64, max(1, ProcessInfoCores.count))

    /// How many column slices a GEMM is cut into, from its shape and the machine alone: OpenBLAS
    /// rounds a column's sums differently depending on the slice that holds it, so slices that
    /// followed `--threads` made a prefill's numbers depend on it. In whole 16-column units, none
    /// of fewer than about a million multiply-adds (below that a thread costs more than it
    /// saves). With as many threads as cores (the default) each thread runs one slice; fewer
    /// threads run several slices each (at one thread on 2 cores, pp512 measured
    /// about 10% slower than one whole-width call: each slice packs the activations again).
    static func sliceCount(m: Int, n: Int, k: Int) -> Int {
        let smallest = max(64, 1_000_000 / max(1, m * k))
        return max(1, min(maximumSlices, n / smallest, (n + 15) / 16))
    }

    /// The OpenBLAS core type this process should run with, when OpenBLAS fell back to its
    /// generic SSE3 kernels ("Prescott") on a processor it does not recognise although the CPU has
    /// AVX2 or AVX-512. Measured here on such a Xeon: pp512 goes from 177 to 548 tokens/s with
    /// SkylakeX kernels. nil when OpenBLAS's own choice should stand.
    public static var betterCoreType: String? {
        #if canImport(Accelerate)
        return nil
        #else
        guard let name = openblas_get_corename() else { return nil }
        let core = String(cString: name).lowercased()
        guard core == "prescott" || core == "core2" || core == "nehalem" else { return nil }
        if chalf_cpu_supports_avx512f() != 0 { return "SkylakeX" }
        if chalf_cpu_supports_avx2() != 0 { return "Haswell" }
        return nil
        #endif
    }

    /// OpenBLAS runs one thread per call, once, before the first GEMM: our worker threads split
    /// each GEMM themselves (see `splitColumns`), whatever `Threads.count` is.
    private static let singleThreaded: Void = {
        #if !canImport(Accelerate)
        openblas_set_num_threads(1)
        #endif
    }()
}
