import Foundation
import ShadowCLI
import ShadowKernels
import ShadowFormats
import CHalf

// OpenBLAS picks its kernels when the library loads, from the environment; when it does not
// recognise this processor, start again with the core type that fits it (see BLAS.betterCoreType).
if ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil, let core = BLAS.betterCoreType {
    setenv("OPENBLAS_CORETYPE", core, 1)
    let arguments = CommandLine.unsafeArgv
    execv("/proc/self/exe", arguments)
    // execv only returns on failure; then carry on with the generic kernels.
}

// Freed tensors of a megabyte or more return to the system (peak RSS of a load, see CHalf.h).
chalf_map_large_allocations(1 << 20)

// A model file truncated by another process while mapped: one line naming it, exit status 1,
// rather than death by SIGBUS.
MappedFile.installTruncationHandler()

// The arguments' bytes as given: CLI.run refuses any that are not UTF-8.
let argumentBytes = (1..<Int(CommandLine.argc)).map { index -> [UInt8] in
    guard let argument = CommandLine.unsafeArgv[index] else { return [] }
    return Array(UnsafeRawBufferPointer(start: argument, count: strlen(argument)))
}
exit(CLI.run(argumentBytes: argumentBytes))
