import ShadowModels
import ShadowModelTestSupport

extension TinyModels {
    /// The Llama this target's criteria, oracle and mask tests were written against: seeds from
    /// 500, projections of scale 0.3 and a 300-token context, where the models' tests draw from
    /// 100 at scale 0.2 with a 64-token context.
    static func criteriaLlama(layers: Int = 2, heads: Int = 4, kvHeads: Int = 2,
                              silencedHead: Int? = nil, silencedNeuron: Int? = nil) -> LlamaModel {
        llama(layers: layers, heads: heads, kvHeads: kvHeads, maxContext: 300, baseSeed: 500, scale: 0.3,
              silencedHead: silencedHead, silencedNeuron: silencedNeuron)
    }
}
