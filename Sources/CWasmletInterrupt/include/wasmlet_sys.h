// Thin wrappers over libc calls that Swift's Glibc module does not import (they need
// _GNU_SOURCE or live in malloc.h).
#pragma once
#include <poll.h>
#include <stddef.h>
#include <time.h>

/// ppoll(2) with an optional timeout; the signal mask is left as it is.
int wasmlet_ppoll(struct pollfd *fds, unsigned long count, const struct timespec *timeout);

/// The calling thread's kernel id (gettid(2)).
int wasmlet_gettid(void);

/// Names the calling thread (prctl PR_SET_NAME; at most 15 bytes are kept), as ps and perf show it.
void wasmlet_set_thread_name(const char *name);

/// malloc_usable_size(3).
size_t wasmlet_malloc_usable_size(void *pointer);

/// accept4(2) with SOCK_NONBLOCK | SOCK_CLOEXEC, the peer's address discarded.
int wasmlet_accept_nonblocking(int fd);

/// pipe2(2) with O_CLOEXEC | O_NONBLOCK (Glibc's Swift module does not export pipe2).
int wasmlet_pipe_nonblocking(int fds[2]);

/// POLLRDHUP (poll(2): the peer closed its writing half).
short wasmlet_pollrdhup(void);
