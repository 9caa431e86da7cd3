// Umbrella header for the CSystemd system-library module (pkg-config `libsystemd`).
// Only the daemon-side API is exposed: sd-daemon (readiness, watchdog, socket
// activation) and the journal's native send protocol. The guard keeps the module
// empty on non-Linux hosts, where WasmletSystemd compiles to nothing.
#ifdef __linux__
#include <sys/uio.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#endif
