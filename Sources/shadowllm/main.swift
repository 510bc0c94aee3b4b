import Foundation
import ShadowCLI
import ShadowKernels

// OpenBLAS picks its kernels when the library loads, from the environment; when it does not
// recognise this processor, start again with the core type that fits it (see BLAS.betterCoreType).
if ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil, let core = BLAS.betterCoreType {
    setenv("OPENBLAS_CORETYPE", core, 1)
    let arguments = CommandLine.unsafeArgv
    execv("/proc/self/exe", arguments)
    // execv only returns on failure; then carry on with the generic kernels.
}

exit(CLI.run(Array(CommandLine.arguments.dropFirst())))
