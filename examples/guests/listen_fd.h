// Finding the listening socket, under wasmlet, wasmtime -S tcplisten, or natively.
//
// Under WASI the host pre-opens listeners: wasmlet names them in WASMLET_LISTEN_FDS
// (comma-separated fd numbers, in the order they were declared); without it, fd 3 is taken, as
// under `wasmtime -S tcplisten` with no preopened directory. Natively (for benchmarks) the
// program binds 127.0.0.1:$PORT itself (PORT defaults to 8080).
#pragma once
#include <stdlib.h>
#include <stdio.h>

#ifdef __wasi__
static int listen_fd(void) {
    const char *fds = getenv("WASMLET_LISTEN_FDS");
    return fds && *fds ? atoi(fds) : 3;
}
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
static int listen_fd(void) {
    const char *port = getenv("PORT");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port ? atoi(port) : 8080)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 1024) != 0) {
        perror("bind/listen");
        exit(1);
    }
    return fd;
}
#endif
