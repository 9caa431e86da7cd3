#include "wasmlet_interrupt.h"

#include <errno.h>
#include <signal.h>
#include <string.h>

// initial-exec TLS: reading it from a signal handler performs no allocation and takes no lock.
static __thread wasmlet_guest_control *current_block __attribute__((tls_model("initial-exec")));

static void wasmlet_interrupt_handler(int signo) {
    (void)signo;
    int saved_errno = errno;
    wasmlet_guest_control *block = current_block;
    if (block != NULL && __atomic_load_n(&block->kill_requested, __ATOMIC_ACQUIRE)) {
        uint64_t *cell = __atomic_load_n(&block->fuel_cell, __ATOMIC_ACQUIRE);
        if (cell != NULL) {
            // The interpreter reads, subtracts and writes this cell without atomics; a store
            // landing between its read and write is lost, which is why the killer re-sends.
            __atomic_store_n(cell, 0, __ATOMIC_RELAXED);
        }
    }
    errno = saved_errno;
}

int wasmlet_interrupt_install(int signo) {
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = wasmlet_interrupt_handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: blocked host syscalls must return EINTR
    if (sigaction(signo, &action, NULL) != 0) {
        return errno;
    }
    return 0;
}

void wasmlet_interrupt_bind(wasmlet_guest_control *block) {
    __atomic_store_n(&current_block, block, __ATOMIC_SEQ_CST);
}

void wasmlet_interrupt_request_kill(wasmlet_guest_control *block) {
    if (__atomic_load_n(&block->kill_requested, __ATOMIC_ACQUIRE)) {
        return;
    }
    uint64_t *cell = __atomic_load_n(&block->fuel_cell, __ATOMIC_ACQUIRE);
    // A racy read of a word the guest thread writes: good enough for accounting.
    uint64_t remaining = cell != NULL ? __atomic_load_n(cell, __ATOMIC_RELAXED) : UINT64_MAX;
    __atomic_store_n(&block->fuel_at_kill, remaining, __ATOMIC_RELAXED);
    __atomic_store_n(&block->kill_requested, 1, __ATOMIC_RELEASE);
}

uint64_t wasmlet_interrupt_fuel_at_kill(const wasmlet_guest_control *block) {
    return __atomic_load_n(&block->fuel_at_kill, __ATOMIC_RELAXED);
}

int wasmlet_interrupt_kill_requested(const wasmlet_guest_control *block) {
    return __atomic_load_n(&block->kill_requested, __ATOMIC_ACQUIRE);
}

uint64_t wasmlet_interrupt_fuel_remaining(const wasmlet_guest_control *block) {
    uint64_t *cell = __atomic_load_n(&block->fuel_cell, __ATOMIC_ACQUIRE);
    return cell != NULL ? __atomic_load_n(cell, __ATOMIC_RELAXED) : UINT64_MAX;
}

void wasmlet_interrupt_set_fuel_cell(wasmlet_guest_control *block, uint64_t *cell) {
    __atomic_store_n(&block->fuel_cell, cell, __ATOMIC_RELEASE);
}

int wasmlet_interrupt_signal(pthread_t thread, int signo) {
    return pthread_kill(thread, signo);
}

int wasmlet_sigrtmin(void) {
    return SIGRTMIN;
}
