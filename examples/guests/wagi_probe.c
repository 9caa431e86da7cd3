// wagi_probe: an HTTP trigger guest (WAGI/CGI) for the tests; PATH_INFO picks what it does.
//   /env       prints argv, every environment variable and a static counter (a fresh instance
//              per request reads 1 every time)
//   /echo      answers the request body's length and a checksum of it
//   /status    Status: 404 with a body;  /location  Location without a Status (302)
//   /crlf      CRLF line ends;           /stderr    one line to stderr, then a normal answer
//   /trap      traps;  /loop  spins forever;  /membomb  allocates until refused, then aborts
//   /garbage   output that is not CGI;   /big  more output than the trigger allows (4 MiB)
//   /exit3     exits 3 after a valid answer;  /sleep  sleeps 300 ms, then answers
//   /spin      one line to stderr, then computes well past a slice on the event loop, then answers
//   /flood     100 numbered lines of 1 KiB to stderr (more than a slice may hold back), then answers
//   /tty       whether stdin, stdout and stderr look like terminals (a CGI's are pipes)
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern char **environ;
static int counter;

static int is(const char *path, const char *name) { return path && strcmp(path, name) == 0; }

int main(int argc, char **argv) {
    const char *path = getenv("PATH_INFO");
    counter++;
    if (is(path, "/env")) {
        printf("Content-Type: text/plain\n\n");
        printf("counter=%d\n", counter);
        for (int i = 0; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
        for (char **e = environ; *e; e++) printf("%s\n", *e);
    } else if (is(path, "/echo")) {
        unsigned long long total = 0, sum = 0;
        static unsigned char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
            // By 64-bit little-endian words, then the tail's bytes: an interpreter in a debug
            // build takes seconds over 10 MiB byte by byte. fread fills whole buffers until
            // the end, so the words fall on the same offsets however the body arrives.
            size_t i = 0;
            for (; i + 8 <= n; i += 8) {
                unsigned long long word;
                memcpy(&word, buf + i, 8);
                sum = sum * 31 + word;
            }
            for (; i < n; i++) sum = sum * 31 + buf[i];
            total += n;
        }
        printf("Content-Type: text/plain\n\nbytes=%llu sum=%llu\n", total, sum);
    } else if (is(path, "/status")) {
        printf("Status: 404 Not Here\nContent-Type: text/plain\n\nnothing at this path\n");
    } else if (is(path, "/location")) {
        printf("Location: /elsewhere\n\n");
    } else if (is(path, "/crlf")) {
        printf("Content-Type: text/plain\r\nX-Probe: crlf\r\n\r\ncrlf body\n");
    } else if (is(path, "/stderr")) {
        fprintf(stderr, "probe wrote this to stderr\n");
        printf("Content-Type: text/plain\n\nlogged\n");
    } else if (is(path, "/trap")) {
        __builtin_trap();
    } else if (is(path, "/loop")) {
        volatile unsigned long spins = 0;
        for (;;) spins++;
    } else if (is(path, "/membomb")) {
        for (;;) {
            volatile char *block = malloc(1 << 20);
            if (!block) abort();
            for (size_t off = 0; off < (1 << 20); off += 4096) block[off] = 1;
        }
    } else if (is(path, "/garbage")) {
        printf("this is not a CGI response");
    } else if (is(path, "/big")) {
        printf("Content-Type: application/octet-stream\n\n");
        static char chunk[65536];
        memset(chunk, 'x', sizeof chunk);
        for (int i = 0; i < 64; i++) fwrite(chunk, 1, sizeof chunk, stdout);
    } else if (is(path, "/exit3")) {
        printf("Content-Type: text/plain\n\nabout to fail\n");
        fflush(stdout);
        return 3;
    } else if (is(path, "/sleep")) {
        struct timespec pause = {0, 300 * 1000 * 1000};
        nanosleep(&pause, NULL);
        printf("Content-Type: text/plain\n\nslept\n");
    } else if (is(path, "/spin")) {
        fprintf(stderr, "probe spins\n");
        volatile unsigned long spins = 0;
        for (unsigned long i = 0; i < 2000000; i++) spins++;
        printf("Content-Type: text/plain\n\nspun %lu\n", (unsigned long)spins);
    } else if (is(path, "/flood")) {
        static char pad[1001];
        memset(pad, 'f', 1000);
        for (int i = 0; i < 100; i++) fprintf(stderr, "flood %03d %s\n", i, pad);
        printf("Content-Type: text/plain\n\nflooded\n");
    } else if (is(path, "/tty")) {
        printf("Content-Type: text/plain\n\ntty %d %d %d\n", isatty(0), isatty(1), isatty(2));
    } else {
        printf("Status: 404 Not Found\nContent-Type: text/plain\n\nunknown probe %s\n", path ? path : "(none)");
    }
    return 0;
}
