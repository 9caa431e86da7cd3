// cat: filesystem and stdin tests. `cat PATH...` copies files (opened through the WASI preopens,
// e.g. /data/file.txt) to stdout; no args copies stdin to stdout until EOF;
// `--write PATH TEXT` creates/truncates PATH and writes TEXT (read-only preopen checks);
// `--ls DIR` prints the names in DIR, sorted, one per line. Errors: "cat: <path>: <strerror>", exit 1.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *path) {
    fprintf(stderr, "cat: %s: %s\n", path, strerror(errno));
    return 1;
}

static int copy_fd(int fd, const char *name) {
    char buf[16384];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(STDOUT_FILENO, buf + off, (size_t)(n - off));
            if (w < 0)
                return fail("<stdout>");
            off += w;
        }
    }
    return n < 0 ? fail(name) : 0;
}

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return fail(path);
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len) {
        close(fd);
        return fail(path);
    }
    return close(fd) < 0 ? fail(path) : 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list_dir(const char *path) {
    DIR *d = opendir(path);
    if (!d)
        return fail(path);
    char **names = NULL;
    size_t count = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
            continue;
        names = realloc(names, (count + 1) * sizeof *names);
        names[count++] = strdup(ent->d_name);
    }
    closedir(d);
    qsort(names, count, sizeof *names, cmp_str);
    for (size_t i = 0; i < count; i++)
        printf("%s\n", names[i]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2)
        return copy_fd(STDIN_FILENO, "<stdin>");
    if (strcmp(argv[1], "--write") == 0 && argc == 4)
        return write_file(argv[2], argv[3]);
    if (strcmp(argv[1], "--ls") == 0 && argc == 3)
        return list_dir(argv[2]);
    for (int i = 1; i < argc; i++) {
        int fd = open(argv[i], O_RDONLY);
        if (fd < 0)
            return fail(argv[i]);
        int rc = copy_fd(fd, argv[i]);
        close(fd);
        if (rc != 0)
            return rc;
    }
    return 0;
}
