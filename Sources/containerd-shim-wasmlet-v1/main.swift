// containerd runtime v2 shim for wasmlet. All logic lives in WasmletShim (so tests can reach it).
#if canImport(Glibc)
import Glibc
#endif
import WasmletShim

exit(ShimMain.run(arguments: CommandLine.arguments))
