// swift-tools-version:6.0
import PackageDescription

// Release builds name a CPU target so SIMD code is vectorised and Float16 converts in hardware
// (DESIGN §8: without it `SIMD.addProduct` becomes library calls). Haswell = AVX2 + FMA + F16C,
// which every x86 server of the last decade has; it keeps the binary portable across Intel and AMD.
#if arch(x86_64)
let cpuFlags: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell", "-Xcc", "-march=haswell"])]
let cpuCFlags: [CSetting] = [.unsafeFlags(["-march=haswell"])]
#else
let cpuFlags: [SwiftSetting] = []
let cpuCFlags: [CSetting] = []
#endif

// Only the two modules whose loops carry every token (kernels, architectures) drop overflow and
// bounds checks; those reading files, prompts and arguments keep them, so a mistake there traps
// instead of reading past a buffer. Measured on SmolLM2 (load, tokenize, eval, calibrate, training):
// the checked modules cost nothing visible.
let swiftSettings: [SwiftSetting] = cpuFlags
let hotLoopSettings: [SwiftSetting] = cpuFlags + [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]

let package = Package(
    name: "ShadowLLM",
    products: [
        .executable(name: "shadowllm", targets: ["shadowllm"]),
        // Every module but the command line, for Swift code of its own (docs/user-guide.md, "From Swift").
        .library(name: "ShadowKernels", targets: ["ShadowKernels"]),
        .library(name: "ShadowFormats", targets: ["ShadowFormats"]),
        .library(name: "ShadowTokenizers", targets: ["ShadowTokenizers"]),
        .library(name: "ShadowModels", targets: ["ShadowModels"]),
        .library(name: "ShadowTasks", targets: ["ShadowTasks"]),
        .library(name: "ShadowSparsity", targets: ["ShadowSparsity"]),
        .library(name: "ShadowEval", targets: ["ShadowEval"]),
    ],
    targets: [
        // Debian's OpenBLAS (libopenblas-dev). On macOS the kernels use Accelerate instead.
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        // C kernels and intrinsics: fp16 conversion in hardware (F16C), fp16/bf16/q8 dot products,
        // GEMV and small-GEMM micro-kernels, AVX-512 and AVX512-BF16 variants chosen at run time,
        // CPU feature checks and the allocator's mmap threshold.
        .target(name: "CHalf", cSettings: cpuCFlags),
        // Tensor kernels: buffers, BLAS calls, SIMD loops, a parallel-for. Knows nothing of models.
        .target(name: "ShadowKernels",
                dependencies: ["CHalf", .target(name: "CBLAS", condition: .when(platforms: [.linux]))],
                swiftSettings: hotLoopSettings),
        // File formats: GGUF, safetensors, the error type every module throws.
        .target(name: "ShadowFormats", dependencies: ["CHalf", "ShadowKernels"], swiftSettings: swiftSettings),
        // Tokenizers: byte-level BPE (GPT-2 / SmolLM2) and SentencePiece-style BPE (Llama-2); chat templates.
        .target(name: "ShadowTokenizers", dependencies: ["ShadowFormats"], swiftSettings: swiftSettings),
        // Model configurations, architectures (one file each), loading, KV cache, generation, scoring.
        .target(name: "ShadowModels",
                dependencies: ["ShadowKernels", "ShadowFormats", "ShadowTokenizers"],
                swiftSettings: hotLoopSettings),
        // Task files (PIQA, HellaSwag, COPA, ARC, OpenBookQA, Winogrande, RTE, BoolQ, LAMBADA,
        // WikiText) and their lm-evaluation-harness prompt templates; shared by calibration and eval.
        .target(name: "ShadowTasks", dependencies: ["ShadowFormats"], swiftSettings: swiftSettings),
        // Importance criteria, calibration, traces, predictors and masks.
        .target(name: "ShadowSparsity", dependencies: ["ShadowModels", "ShadowTasks"], swiftSettings: swiftSettings),
        // Evaluation: multiple-choice and perplexity tasks, dense and sparse side by side, reports.
        .target(name: "ShadowEval", dependencies: ["ShadowModels", "ShadowTasks", "ShadowSparsity"],
                swiftSettings: swiftSettings),
        // The command line: argument parsing and one file per subcommand.
        .target(name: "ShadowCLI", dependencies: ["ShadowModels", "ShadowTasks", "ShadowSparsity", "ShadowEval"],
                swiftSettings: swiftSettings),
        .executableTarget(name: "shadowllm", dependencies: ["ShadowCLI", "CHalf", "ShadowKernels", "ShadowFormats"], swiftSettings: swiftSettings),

        // Helpers every test target shares: float comparison, seeded random data, scratch files
        // removed when the test process exits, the fuzz tests' seeds and mutations.
        .target(name: "ShadowTestSupport", dependencies: ["ShadowFormats"], path: "Tests/ShadowTestSupport",
                swiftSettings: swiftSettings),
        // Models for the test targets that run them: tiny random-weight Llamas built in code and the
        // path of the reference checkpoints. A target of its own so the kernels', formats',
        // tokenizers' and tasks' tests are not built against ShadowModels.
        .target(name: "ShadowModelTestSupport", dependencies: ["ShadowKernels", "ShadowModels", "ShadowTestSupport"],
                path: "Tests/ShadowModelTestSupport", swiftSettings: swiftSettings),
        .testTarget(name: "ShadowKernelsTests", dependencies: ["ShadowKernels", "ShadowTestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "ShadowFormatsTests", dependencies: ["ShadowFormats", "ShadowTestSupport"],
                    resources: [.copy("Fixtures")], swiftSettings: swiftSettings),
        .testTarget(name: "ShadowTokenizersTests", dependencies: ["ShadowTokenizers", "ShadowTestSupport"],
                    resources: [.copy("Fixtures")], swiftSettings: swiftSettings),
        .testTarget(name: "ShadowModelsTests", dependencies: ["ShadowModels", "ShadowTestSupport", "ShadowModelTestSupport"],
                    // The checkpoints are read where they lie (ModelFixtures), by every test target.
                    exclude: ["Fixtures"], swiftSettings: swiftSettings),
        .testTarget(name: "ShadowTasksTests", dependencies: ["ShadowTasks", "ShadowTestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "ShadowSparsityTests", dependencies: ["ShadowSparsity", "ShadowTestSupport", "ShadowModelTestSupport"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "ShadowEvalTests", dependencies: ["ShadowEval", "ShadowTestSupport", "ShadowModelTestSupport"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "ShadowCLITests", dependencies: ["ShadowCLI", "ShadowTestSupport", "ShadowModelTestSupport"],
                    resources: [.copy("Fixtures")], swiftSettings: swiftSettings),
    ]
)
