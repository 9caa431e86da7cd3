// Kill support for guests running on the WasmKit interpreter.
//
// WasmKit 0.4.2 has no way to interrupt a running call from another thread. What does work
// (measured in shared/docs/wasmkit-0.4.2.md) is a signal sent to the guest's own thread whose
// handler stores 0 into that store's fuel counter: the interpreter's next fuel check then raises
// its ordinary "out of fuel" trap and every Swift frame unwinds normally. The handler only ever
// touches the control block of the thread it runs on, and only when that block asks for a kill,
// so a late signal can never hit another guest.
#pragma once
#include <pthread.h>
#include <stdint.h>

// Fields are plain and accessed only with __atomic builtins (Swift cannot import _Atomic).
typedef struct wasmlet_guest_control {
    /// Address of the running store's fuel counter, or NULL while no wasm runs on the thread.
    uint64_t *fuel_cell;
    /// Non-zero once a kill was requested for the run this block belongs to.
    int kill_requested;
    /// The fuel counter's value when the kill was requested: the handler's zero would otherwise
    /// erase how much fuel the guest really used.
    uint64_t fuel_at_kill;
} wasmlet_guest_control;

/// Installs the process-wide handler for `signo` (without SA_RESTART, so a guest blocked in a
/// host syscall gets EINTR). Returns 0 or an errno value.
int wasmlet_interrupt_install(int signo);

/// Binds `block` to the calling thread; pass NULL to unbind. The block must stay valid until
/// it is unbound and no further signal can be sent to this thread for it.
void wasmlet_interrupt_bind(wasmlet_guest_control *block);

/// Marks the block as killed and zeroes its fuel from the calling thread too (harmless when the
/// guest is not in wasm). The signal is what makes the write visible to a running loop.
void wasmlet_interrupt_request_kill(wasmlet_guest_control *block);

/// The fuel counter's value when the first kill was requested (UINT64_MAX if none).
uint64_t wasmlet_interrupt_fuel_at_kill(const wasmlet_guest_control *block);

/// Whether a kill was requested for this block (host functions poll this between waits).
int wasmlet_interrupt_kill_requested(const wasmlet_guest_control *block);

/// The store's fuel counter as another thread sees it now (a racy but word-sized read), or
/// UINT64_MAX while no wasm runs. The caller must know the store is alive (see GuestInterrupter).
uint64_t wasmlet_interrupt_fuel_remaining(const wasmlet_guest_control *block);

/// Points the block at a store's fuel counter (NULL when leaving wasm).
void wasmlet_interrupt_set_fuel_cell(wasmlet_guest_control *block, uint64_t *cell);

/// Sends `signo` to `thread`. Returns 0 or an errno value.
int wasmlet_interrupt_signal(pthread_t thread, int signo);

/// The lowest real-time signal number usable by applications (glibc reserves a few).
int wasmlet_sigrtmin(void);
