// wagi_hello: the smallest HTTP trigger guest (WAGI/CGI): a header, a blank line, a body.
// Also built natively: lighttpd runs that build through mod_cgi in the HTTP benchmark.
#include <stdio.h>

int main(void) {
    fputs("Content-Type: text/plain\n\nhello from wasmlet\n", stdout);
    return 0;
}
