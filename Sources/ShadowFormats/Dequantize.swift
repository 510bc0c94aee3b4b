import CHalf
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

#if _endian(big)
#error("GGUF and safetensors are little-endian; the readers load their bytes as host integers")
#endif

// Conversions from stored tensor bytes to fp32. Block layouts follow ggml's `block_q*` structs:
// in the 4- and 5-bit formats the low nibbles of the 16 bytes are elements 0–15 and the high
// nibbles elements 16–31; the optional fifth bit of element j is bit j of a 32-bit mask.
// Each function walks the blocks with raw pointers and writes a block of 32 in one straight loop,
// which the compiler vectorises; no per-element closures.

/// Converts `count` elements of `dtype` at `source` to fp32 at `destination`. The caller has
/// checked that `source` holds exactly `count` elements and that `dtype.canConvertToFloats`.
func dequantize(_ dtype: TensorDType, from source: UnsafeRawPointer, to destination: UnsafeMutablePointer<Float>,
                count: Int) {
    let blocks = count / dtype.blockSize
    switch dtype {
    case .f32: memcpy(destination, source, count * 4)
    case .f16: convertF16(source, destination, count)
    case .bf16: convertBF16(source, destination, count)
    case .f64:
        for i in 0..<count { destination[i] = Float(source.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
    case .q8_0: dequantizeQ8_0(source, destination, blocks)
    case .q4_0: dequantizeQ4_0(source, destination, blocks)
    case .q4_1: dequantizeQ4_1(source, destination, blocks)
    case .q5_0: dequantizeQ5_0(source, destination, blocks)
    case .q5_1: dequantizeQ5_1(source, destination, blocks)
    default: preconditionFailure("dequantize called for \(dtype), which convertTensor rejects")
    }
}

@inline(__always)
private func half(_ pointer: UnsafeRawPointer, _ offset: Int) -> Float {
    chalf_to_float(pointer.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
}

private func convertF16(_ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, _ count: Int) {
    // safetensors does not align its data, so an fp16 tensor may start at an odd address.
    if Int(bitPattern: source) % 2 == 0 {
        chalf_to_float_n(source.assumingMemoryBound(to: UInt16.self), destination, count)
    } else {
        for i in 0..<count { destination[i] = half(source, 2 * i) }
    }
}

private func convertBF16(_ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, _ count: Int) {
    // bf16 is the top half of an fp32.
    for i in 0..<count {
        let bits = UInt32(source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16
        destination[i] = Float(bitPattern: bits)
    }
}

/// Q8_0: f16 d, 32 int8; value d·q.
private func dequantizeQ8_0(_ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, _ blocks: Int) {
    for b in 0..<blocks {
        let block = source + b * 34
        let out = destination + b * 32
        let d = half(block, 0)
        for j in 0..<32 { out[j] = Float(block.load(fromByteOffset: 2 + j, as: Int8.self)) * d }
    }
}

/// Q4_0: f16 d, 16 bytes of nibbles; value d·(q − 8).
private func dequantizeQ4_0(_ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, _ blocks: Int) {
    for b in 0..<blocks {
        let block = source + b * 18
        let out = destination + b * 32
        let d = half(block, 0)
        for j in 0..<16 {
            let byte = block.load(fromByteOffset: 2 + j, as: UInt8.self)
            out[j] = Float(Int32(byte & 0x0F) - 8) * d
            out[j + 16] = Float(Int32(byte >> 4) - 8) * d
        }
    }
}

/// Q4_1: f16 d, f16 m, 16 bytes of nibbles; value d·q + m.
private func dequantizeQ4_1(_ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, _ blocks: Int) {
    for b in 0..<blocks {
        let block = source + b * 20
        let out = destination + b * 32
        let d = half(block, 0)
        let m = half(block, 2)
        for j in 0..<16 {
            let byte = block.load(fromByteOffset: 4 + j, as: UInt8.self)
            out[j] = Float(byte & 0x0F) * d + m
            out[j + 16] = Float(byte >> 4) * d + m
        }
    }
}

/// Q5_0: f16 d, u32 fifth bits, 16 bytes of nibbles; value d·(q − 16).
private func dequantizeQ5_0(_ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, _ blocks: Int) {
    for b in 0..<blocks {
        let block = source + b * 22
        let out = destination + b * 32
        let d = half(block, 0)
        let high = block.loadUnaligned(fromByteOffset: 2, as: UInt32.self)
        for j in 0..<16 {
            let byte = UInt32(block.load(fromByteOffset: 6 + j, as: UInt8.self))
            let low = (byte & 0x0F) | ((high >> UInt32(j)) & 1) << 4
            let top = (byte >> 4) | ((high >> UInt32(j + 16)) & 1) << 4
            out[j] = Float(Int32(low) - 16) * d
            out[j + 16] = Float(Int32(top) - 16) * d
        }
    }
}

/// Q5_1: f16 d, f16 m, u32 fifth bits, 16 bytes of nibbles; value d·q + m.
private func dequantizeQ5_1(_ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, _ blocks: Int) {
    for b in 0..<blocks {
        let block = source + b * 24
        let out = destination + b * 32
        let d = half(block, 0)
        let m = half(block, 2)
        let high = block.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
        for j in 0..<16 {
            let byte = UInt32(block.load(fromByteOffset: 8 + j, as: UInt8.self))
            let low = (byte & 0x0F) | ((high >> UInt32(j)) & 1) << 4
            let top = (byte >> 4) | ((high >> UInt32(j + 16)) & 1) << 4
            out[j] = Float(low) * d + m
            out[j + 16] = Float(top) * d + m
        }
    }
}
