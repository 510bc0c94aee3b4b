import Testing
import ShadowFormats
import ShadowTestSupport

@Suite("SplitMix64")
struct SplitMix64Tests {
    @Test("gives the published sequence for seed 0 and stays below its bound")
    func sequence() {
        var generator = SplitMix64(seed: 0)
        #expect([generator.next(), generator.next(), generator.next()]
                == [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F])
        var counts = [Int](repeating: 0, count: 3)
        for _ in 0..<3000 { counts[generator.next(below: 3)] += 1 }
        #expect(counts.allSatisfy { (900...1100).contains($0) }, "\(counts)")
    }
}
