// A TCP echo server over poll(): one listener, up to MAX_CLIENTS clients at once, each echoed
// back what it sends until it closes. Prints "listening" once it is about to poll.
//
//   echoserver [MAX_CLIENTS]     (default 1024)
//
// With WASMLET_LISTEN_FDS naming several listeners it serves all of them.
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listen_fd.h"

int main(int argc, char **argv) {
    int max_clients = argc > 1 ? atoi(argv[1]) : 1024;
    int listeners[16];
    int nlisteners = 0;
    const char *fds = getenv("WASMLET_LISTEN_FDS");
    if (fds && *fds) {
        for (const char *p = fds; *p && nlisteners < 16;) {
            listeners[nlisteners++] = atoi(p);
            p = strchr(p, ',');
            if (!p) break;
            p++;
        }
    } else {
        listeners[nlisteners++] = listen_fd();
    }
    struct pollfd *set = calloc(nlisteners + max_clients, sizeof *set);
    int count = nlisteners;
    for (int i = 0; i < nlisteners; i++) set[i] = (struct pollfd){.fd = listeners[i], .events = POLLIN};
    char buffer[16384];
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        // While full, the listeners are left out: new clients wait in the backlog.
        int first = count - nlisteners >= max_clients ? nlisteners : 0;
        int ready = poll(set + first, count - first, -1);
        if (ready < 0) {
            if (errno == EINTR) continue;
            perror("poll");
            return 1;
        }
        for (int i = 0; i < nlisteners && first == 0; i++) {
            if (!(set[i].revents & POLLIN)) continue;
            struct sockaddr_storage peer;
            socklen_t length = sizeof peer;
            int client = accept(set[i].fd, (struct sockaddr *)&peer, &length);
            if (client < 0) continue;
            set[count++] = (struct pollfd){.fd = client, .events = POLLIN};
            if (count - nlisteners >= max_clients) break;
        }
        for (int i = nlisteners; i < count; i++) {
            if (!set[i].revents) continue;
            ssize_t n = recv(set[i].fd, buffer, sizeof buffer, 0);
            if (n > 0) {
                ssize_t done = 0;
                while (done < n) {
                    ssize_t sent = send(set[i].fd, buffer + done, n - done, 0);
                    if (sent <= 0) break;
                    done += sent;
                }
                if (done == n) continue;
            }
            close(set[i].fd);
            set[i] = set[--count];
            set[count].revents = 0;
            i--;
        }
    }
}
