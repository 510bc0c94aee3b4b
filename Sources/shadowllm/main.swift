import Foundation
import ShadowCLI

exit(CLI.run(Array(CommandLine.arguments.dropFirst())))
