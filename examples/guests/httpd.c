// A tiny HTTP/1.0-style server: answers every GET with a fixed page, or with a file from the
// preopened directory given as DOCROOT for paths under /files/, and closes the connection after
// each response. It serves many clients at once with poll(): a request is answered once its
// headers ("\r\n\r\n") are in.
//
//   httpd [DOCROOT]
//
// Responses: "/" -> 200 "hello from wasmlet httpd\n"; "/files/NAME" -> 200 the file, or 404;
// "/exit" -> 200, then the server exits 0 (for tests); anything but GET -> 405.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listen_fd.h"

#define MAX_CLIENTS 256
#define REQUEST_MAX 4096

struct client {
    int fd;
    size_t length;
    char request[REQUEST_MAX];
};

static const char *docroot;
static struct client clients[MAX_CLIENTS];
static struct pollfd set[MAX_CLIENTS + 1];

static void send_all(int fd, const char *data, size_t length) {
    while (length > 0) {
        ssize_t sent = send(fd, data, length, 0);
        if (sent <= 0) return;
        data += sent;
        length -= sent;
    }
}

static void respond(int fd, const char *status, const char *body, size_t length) {
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
                     length);
    send_all(fd, head, n);
    send_all(fd, body, length);
}

static void serve_file(int fd, const char *name) {
    char path[1024];
    if (!docroot || strstr(name, "..")) {
        respond(fd, "404 Not Found", "not found\n", 10);
        return;
    }
    snprintf(path, sizeof path, "%s/%s", docroot, name);
    int file = open(path, O_RDONLY);
    if (file < 0) {
        respond(fd, "404 Not Found", "not found\n", 10);
        return;
    }
    static char content[1 << 16];
    ssize_t n = read(file, content, sizeof content);
    close(file);
    respond(fd, "200 OK", content, n > 0 ? (size_t)n : 0);
}

// Returns 1 when the server should exit.
static int handle(struct client *client) {
    static const char page[] = "hello from wasmlet httpd\n";
    char method[8] = {0}, target[1024] = {0};
    int exiting = 0;
    if (sscanf(client->request, "%7s %1023s", method, target) != 2 || strcmp(method, "GET") != 0) {
        respond(client->fd, "405 Method Not Allowed", "method not allowed\n", 19);
    } else if (strncmp(target, "/files/", 7) == 0) {
        serve_file(client->fd, target + 7);
    } else if (strcmp(target, "/exit") == 0) {
        respond(client->fd, "200 OK", "bye\n", 4);
        exiting = 1;
    } else {
        respond(client->fd, "200 OK", page, sizeof page - 1);
    }
    shutdown(client->fd, SHUT_WR);
    return exiting;
}

int main(int argc, char **argv) {
    docroot = argc > 1 ? argv[1] : NULL;
    int listener = listen_fd();
    int count = 0;
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        set[0] = (struct pollfd){.fd = count < MAX_CLIENTS ? listener : -1, .events = POLLIN};
        for (int i = 0; i < count; i++) set[i + 1] = (struct pollfd){.fd = clients[i].fd, .events = POLLIN};
        if (poll(set, count + 1, -1) < 0) {
            if (errno == EINTR) continue;
            perror("poll");
            return 1;
        }
        for (int i = count - 1; i >= 0; i--) {
            if (!set[i + 1].revents) continue;
            struct client *client = &clients[i];
            ssize_t n = recv(client->fd, client->request + client->length, REQUEST_MAX - 1 - client->length, 0);
            int done = n <= 0;
            if (n > 0) {
                client->length += n;
                client->request[client->length] = 0;
                if (strstr(client->request, "\r\n\r\n") || client->length == REQUEST_MAX - 1) {
                    if (handle(client)) return 0;
                    done = 1;
                }
            }
            if (done) {
                close(client->fd);
                clients[i] = clients[--count];
            }
        }
        if (set[0].revents & POLLIN) {
            struct sockaddr_storage peer;
            socklen_t length = sizeof peer;
            int fd = accept(listener, (struct sockaddr *)&peer, &length);
            if (fd >= 0) {
                clients[count].fd = fd;
                clients[count].length = 0;
                count++;
            }
        }
    }
}
