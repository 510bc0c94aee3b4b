import Foundation
import Testing
import ShadowKernels
import ShadowModels

/// The tiny reference checkpoints written by scripts/reference/make_fixtures.py, in the models'
/// test target's folder. Every test target reads them in the source tree through this one path,
/// so no copy of the 16 MB of files is made and no target needs a path of its own.
public enum ModelFixtures {
    public static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("ShadowModelsTests/Fixtures")

    /// The path of fixture `name`: a checkpoint directory or a file.
    public static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// Checkpoint `name` as a model the importance criteria can take gradients of.
    public static func differentiableModel(_ name: String, weights: WeightDType = .f32,
                                           sourceLocation: SourceLocation = #_sourceLocation) throws -> any DifferentiableLanguageModel {
        try #require(try ModelLoader.load(path: path(name), weights: weights).model as? any DifferentiableLanguageModel,
                     sourceLocation: sourceLocation)
    }
}
