#define _GNU_SOURCE
#include "wasmlet_sys.h"

#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int wasmlet_gettid(void) {
    return (int)syscall(SYS_gettid);
}

void wasmlet_set_thread_name(const char *name) {
    prctl(PR_SET_NAME, name, 0, 0, 0);
}

int wasmlet_ppoll(struct pollfd *fds, unsigned long count, const struct timespec *timeout) {
    return ppoll(fds, (nfds_t)count, timeout, NULL);
}

size_t wasmlet_malloc_usable_size(void *pointer) {
    return malloc_usable_size(pointer);
}

int wasmlet_accept_nonblocking(int fd) {
    return accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int wasmlet_pipe_nonblocking(int fds[2]) {
    return pipe2(fds, O_CLOEXEC | O_NONBLOCK);
}

short wasmlet_pollrdhup(void) {
    return POLLRDHUP;
}
