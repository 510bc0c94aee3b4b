import CHalf

/// IEEE fp16 row kernels for data that is not a weight matrix (the KV cache, f16 files written): the same
/// register-widening loops the 16-bit weight kernels use, on plain pointers.
public enum HalfVectors {
    /// dst[i] = fp16(src[i]), rounding to nearest even.
    public static func narrow(_ dst: UnsafeMutablePointer<UInt16>, _ src: UnsafePointer<Float>, count: Int) {
        chalf_narrow(dst, src, count, 0)
    }

    /// dst[i] = Float(src[i]).
    public static func widen(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<UInt16>, count: Int) {
        chalf_widen(dst, src, count, 0)
    }

    /// out[r] = ⟨W[r, :], x⟩ for the rows `0 ..< rows` of a row-major `(rows, cols)` fp16 matrix.
    public static func dotRows(_ out: UnsafeMutablePointer<Float>, _ w: UnsafePointer<UInt16>,
                               _ x: UnsafePointer<Float>, rows: Int, cols: Int) {
        chalf_gemv_rows(out, w, x, cols, nil, 0, rows, 0)
    }

    /// y[:] += Σ_r x[r] · W[r, :] over the rows `0 ..< rows` of a row-major `(rows, cols)` fp16 matrix.
    public static func accumulateRows(_ y: UnsafeMutablePointer<Float>, _ w: UnsafePointer<UInt16>,
                                      _ x: UnsafePointer<Float>, rows: Int, cols: Int) {
        chalf_axpy_rows(y, w, x, nil, rows, cols, 0, cols, 0)
    }
}
