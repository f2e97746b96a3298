/* hello-c: a WAGI web app for Nimbus. The DEA runs it once per request, the CGI way:
 * the request is in environment variables and on stdin, the response goes to stdout
 * (headers, an empty line, the body).
 *
 *   GET  /any/path?name=Bob -> greeting naming the path and the query
 *   POST /any/path          -> the greeting plus the size and text of the body
 *   GET  /missing           -> 404, to show the Status header
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *env(const char *name) {
    const char *value = getenv(name);
    return value ? value : "";
}

int main(void) {
    const char *method = env("REQUEST_METHOD");
    const char *path = env("PATH_INFO");
    const char *query = env("QUERY_STRING");

    if (strcmp(path, "/missing") == 0) {
        printf("Status: 404 Not Found\nContent-Type: text/plain\n\nnothing at %s\n", path);
        return 0;
    }
    printf("Content-Type: text/plain; charset=utf-8\n");
    printf("X-Powered-By: C via WAGI\n\n");
    printf("Hello from C, %s!\n", path);
    if (*query) {
        printf("query: %s\n", query);
    }
    if (strcmp(method, "POST") == 0) {
        long length = atol(env("CONTENT_LENGTH"));
        char buffer[4096];
        size_t total = 0, n;
        printf("You posted %ld bytes: ", length);
        while ((n = fread(buffer, 1, sizeof buffer, stdin)) > 0) {
            fwrite(buffer, 1, n, stdout);
            total += n;
        }
        printf("\n");
        fprintf(stderr, "hello-c: read %zu bytes of body\n", total); /* stderr is the app's log */
    }
    return 0;
}
