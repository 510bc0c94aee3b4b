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
// The K-quants (`block_q*_K`) pack 256 elements into a super-block with one or two f16 factors and
// a small scale (and min) per sub-block of 16 or 32 elements; their layouts are described at each
// function. The IQ4 types look their 4-bit codes up in a fixed table of 16 levels.
// Each function walks the blocks with raw pointers and writes a block of 16 or 32 in one straight
// loop, which the compiler vectorises; no per-element closures. Products are taken in ggml's
// order (the sub-block scale times d first, then times the quant, then the min subtracted), and
// Swift does not fuse a·b − c into one multiply-add, so results match ggml's bit for bit.

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
    case .q2_K: dequantizeQ2_K(source, destination, blocks)
    case .q3_K: dequantizeQ3_K(source, destination, blocks)
    case .q4_K: dequantizeQ4_K(source, destination, blocks)
    case .q5_K: dequantizeQ5_K(source, destination, blocks)
    case .q6_K: dequantizeQ6_K(source, destination, blocks)
    case .q8_K: dequantizeQ8_K(source, destination, blocks)
    case .iq4_nl: dequantizeIQ4_NL(source, destination, blocks)
    case .iq4_xs: dequantizeIQ4_XS(source, destination, blocks)
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

@inline(__always)
private func byte(_ pointer: UnsafeRawPointer, _ offset: Int) -> UInt8 {
    pointer.load(fromByteOffset: offset, as: UInt8.self)
}

/// Q2_K (84 bytes): 16 bytes of sub-block scales, 64 bytes of 2-bit quants, f16 d, f16 dmin.
/// Sub-block s covers elements 16s…16s+15; its byte holds the scale in the low nibble and the min
/// in the high one; value d·scale·q − dmin·min. Each half of 128 elements reads its 32 quant bytes
/// four times, at shifts 0, 2, 4 and 6, for 32 elements each.
private func dequantizeQ2_K(_ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, _ blocks: Int) {
    for b in 0..<blocks {
        let block = source + b * 84
        let out = destination + b * 256
        let d = half(block, 80)
        let dmin = half(block, 82)
        for sub in 0..<16 {
            let packed = byte(block, sub)
            let scale = d * Float(packed & 0x0F)
            let minimum = dmin * Float(packed >> 4)
            // Element 16·sub + l sits in half sub/8, at shift pair (sub % 8)/2, second 16 when sub is odd.
            let quants = 16 + 32 * (sub / 8) + 16 * (sub % 2)
            let shift = UInt8(2 * ((sub % 8) / 2))
            for l in 0..<16 {
                out[16 * sub + l] = scale * Float((byte(block, quants + l) >> shift) & 3) - minimum
            }
        }
    }
}

/// Q3_K (110 bytes): 32 bytes of high-bit mask, 64 bytes of 2-bit quants, 12 bytes of sixteen 6-bit
/// scales, f16 d. The 2-bit quants are placed as in Q2_K; element 128h + 32j + l takes its third bit
/// from bit 4h + j of mask byte l, and a clear bit subtracts 4 (q in −4…3). Scale i has its low
/// nibble in byte i (i < 8) or the high nibble of byte i − 8, its top two bits at bit 2·(i/4) of
/// byte 8 + i % 4, and is stored offset by 32; value d·(scale − 32)·q.
private func dequantizeQ3_K(_ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, _ blocks: Int) {
    for b in 0..<blocks {
        let block = source + b * 110
        let out = destination + b * 256
        let d = half(block, 108)
        for sub in 0..<16 {
            let low = sub < 8 ? byte(block, 96 + sub) & 0x0F : byte(block, 96 + sub - 8) >> 4
            let high = (byte(block, 104 + sub % 4) >> UInt8(2 * (sub / 4))) & 3
            let scale = d * Float(Int32(low | high << 4) - 32)
            let quants = 32 + 32 * (sub / 8) + 16 * (sub % 2)
            let shift = UInt8(2 * ((sub % 8) / 2))
            let mask = 16 * (sub % 2)
            let maskBit = UInt8(4 * (sub / 8) + (sub % 8) / 2)
            for l in 0..<16 {
                let q = Int32((byte(block, quants + l) >> shift) & 3)
                let third = Int32((byte(block, mask + l) >> maskBit) & 1)
                out[16 * sub + l] = scale * Float(q - 4 + 4 * third)
            }
        }
    }
}

/// The 6-bit scale and min of sub-block `j` (0–7) from the 12 packed bytes at `scales` that Q4_K
/// and Q5_K share: bytes 0–3 hold scales 0–3 and bytes 4–7 mins 0–3 in their low six bits; scales
/// and mins 4–7 take their low nibbles from bytes 8–11 and their top two bits from the spare top
/// bits of bytes 0–3 (scales) and 4–7 (mins).
@inline(__always)
private func scaleAndMin(_ block: UnsafeRawPointer, _ scales: Int, _ j: Int) -> (scale: Float, min: Float) {
    if j < 4 {
        return (Float(byte(block, scales + j) & 63), Float(byte(block, scales + j + 4) & 63))
    }
    let packed = byte(block, scales + j + 4)
    let scale = (packed & 0x0F) | (byte(block, scales + j - 4) >> 6) << 4
    let minimum = (packed >> 4) | (byte(block, scales + j) >> 6) << 4
    return (Float(scale), Float(minimum))
}

/// Q4_K (144 bytes): f16 d, f16 dmin, 12 bytes of eight 6-bit scales and mins (see `scaleAndMin`),
/// 128 bytes of nibbles. Sub-blocks of 32: chunk c of 32 bytes gives sub-block 2c from its low
/// nibbles and 2c + 1 from its high ones; value d·scale·q − dmin·min.
private func dequantizeQ4_K(_ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, _ blocks: Int) {
    dequantizeK4(source, destination, blocks, blockBytes: 144, quants: 16, fifthBits: nil)
}

/// Q5_K (176 bytes): f16 d, f16 dmin, 12 bytes of scales and mins as in Q4_K, 32 bytes of fifth
/// bits, 128 bytes of nibbles placed as in Q4_K. Element l of sub-block s takes its fifth bit from
/// bit s of byte l; value d·scale·q − dmin·min.
private func dequantizeQ5_K(_ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, _ blocks: Int) {
    dequantizeK4(source, destination, blocks, blockBytes: 176, quants: 48, fifthBits: 16)
}

/// Q4_K and Q5_K: the nibbles at byte `quants` of each block, with the fifth bits at byte
/// `fifthBits` for Q5_K.
@inline(__always)
private func dequantizeK4(_ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, _ blocks: Int,
                          blockBytes: Int, quants: Int, fifthBits: Int?) {
    for b in 0..<blocks {
        let block = source + b * blockBytes
        let out = destination + b * 256
        let d = half(block, 0)
        let dmin = half(block, 2)
        for chunk in 0..<4 {
            let (scale1, min1) = scaleAndMin(block, 4, 2 * chunk)
            let (scale2, min2) = scaleAndMin(block, 4, 2 * chunk + 1)
            let d1 = d * scale1, m1 = dmin * min1
            let d2 = d * scale2, m2 = dmin * min2
            let chunkQuants = quants + 32 * chunk
            let lowBit = UInt8(2 * chunk), highBit = UInt8(2 * chunk + 1)
            let o = out + 64 * chunk
            for l in 0..<32 {
                let packed = byte(block, chunkQuants + l)
                var low = packed & 0x0F, high = packed >> 4
                if let fifthBits {
                    let fifth = byte(block, fifthBits + l)
                    low |= ((fifth >> lowBit) & 1) << 4
                    high |= ((fifth >> highBit) & 1) << 4
                }
                o[l] = d1 * Float(low) - m1
                o[l + 32] = d2 * Float(high) - m2
            }
        }
    }
}

/// Q6_K (210 bytes): 128 bytes of low nibbles, 64 bytes of top two bits, 16 int8 scales, f16 d.
/// Element 128h + 32k + l (k 0–3, l 0–31) takes its low nibble from byte 64h + 32·(k % 2) + l
/// (shifted by 4·(k/2)), its top bits from bits 2k, 2k + 1 of byte 128 + 32h + l, and the scale of
/// its 16; q is stored offset by 32; value d·scale·(q − 32).
private func dequantizeQ6_K(_ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, _ blocks: Int) {
    for b in 0..<blocks {
        let block = source + b * 210
        let out = destination + b * 256
        let d = half(block, 208)
        for sub in 0..<16 {
            let scale = d * Float(block.load(fromByteOffset: 192 + sub, as: Int8.self))
            let h = sub / 8, k = (sub % 8) / 2, second = 16 * (sub % 2)
            let lowBytes = 64 * h + 32 * (k % 2) + second
            let lowShift = UInt8(4 * (k / 2))
            let highBytes = 128 + 32 * h + second
            let highShift = UInt8(2 * k)
            for l in 0..<16 {
                let low = (byte(block, lowBytes + l) >> lowShift) & 0x0F
                let high = (byte(block, highBytes + l) >> highShift) & 3
                out[16 * sub + l] = scale * Float(Int32(low | high << 4) - 32)
            }
        }
    }
}

/// Q8_K (292 bytes): f32 d, 256 int8, then 16 int16 sums of 16 quants each (which only ggml's dot
/// products use); value d·q.
private func dequantizeQ8_K(_ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, _ blocks: Int) {
    for b in 0..<blocks {
        let block = source + b * 292
        let out = destination + b * 256
        let d = block.loadUnaligned(fromByteOffset: 0, as: Float.self)
        for j in 0..<256 { out[j] = d * Float(block.load(fromByteOffset: 4 + j, as: Int8.self)) }
    }
}

/// The 16 levels a 4-bit IQ4 code selects (ggml's `kvalues_iq4nl`): denser near zero, as weights are.
private let iq4Levels: (Float, Float, Float, Float, Float, Float, Float, Float,
                        Float, Float, Float, Float, Float, Float, Float, Float) =
    (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)

/// IQ4_NL (18 bytes): f16 d, 16 bytes of nibbles placed as in Q4_0; value d·level[q].
private func dequantizeIQ4_NL(_ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, _ blocks: Int) {
    withIQ4Levels { levels in
        for b in 0..<blocks {
            let block = source + b * 18
            iq4Values(destination + b * 32, block + 2, scale: half(block, 0), levels)
        }
    }
}

/// IQ4_XS (136 bytes): f16 d, u16 of scales' top bits, 4 bytes of scales' low nibbles, 128 bytes of
/// nibbles. Eight sub-blocks of 32, each placed as an IQ4_NL block; sub-block s has the 6-bit scale
/// (nibble s % 2 of byte 4 + s/2) | (bits 2s, 2s + 1 of the u16) << 4, stored offset by 32;
/// value d·(scale − 32)·level[q].
private func dequantizeIQ4_XS(_ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, _ blocks: Int) {
    withIQ4Levels { levels in
        for b in 0..<blocks {
            let block = source + b * 136
            let d = half(block, 0)
            let topBits = block.loadUnaligned(fromByteOffset: 2, as: UInt16.self)
            for sub in 0..<8 {
                let low = (byte(block, 4 + sub / 2) >> UInt8(4 * (sub % 2))) & 0x0F
                let high = UInt8(truncatingIfNeeded: topBits >> UInt16(2 * sub)) & 3
                let scale = d * Float(Int32(low | high << 4) - 32)
                iq4Values(destination + b * 256 + 32 * sub, block + 8 + 16 * sub, scale: scale, levels)
            }
        }
    }
}

/// `body` with the IQ4 levels as a buffer the loops can index without copying the tuple.
@inline(__always)
private func withIQ4Levels(_ body: (UnsafeBufferPointer<Float>) -> Void) {
    withUnsafeBytes(of: iq4Levels) { body($0.assumingMemoryBound(to: Float.self)) }
}

/// 32 values from 16 bytes of IQ4 nibbles (low nibbles first, as Q4_0), each scale·level[q].
@inline(__always)
private func iq4Values(_ out: UnsafeMutablePointer<Float>, _ nibbles: UnsafeRawPointer, scale: Float,
                       _ levels: UnsafeBufferPointer<Float>) {
    for j in 0..<16 {
        let packed = byte(nibbles, j)
        out[j] = scale * levels[Int(packed & 0x0F)]
        out[j + 16] = scale * levels[Int(packed >> 4)]
    }
}
