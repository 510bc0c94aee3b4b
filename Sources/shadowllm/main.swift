import ShadowCLI
