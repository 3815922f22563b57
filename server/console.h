/* console.h: the web console, GET /console, served from files compiled into the binary.
 *
 * The files under server/console/ are turned into a C table at build time (the Makefile's
 * console_files.c rule); the console is a static page that calls the ordinary Kinesis API
 * from the browser, so this module only maps paths to those files. */
#ifndef KINESD_CONSOLE_H
#define KINESD_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>

/* One compiled-in file: its name under /console/ and its bytes (static, never freed). */
struct console_file {
    const char *name;
    const unsigned char *data;
    size_t len;
};

/* The generated table (console_files.c) and its length. */
extern const struct console_file console_files[];
extern const size_t console_nfiles;

/* The Content-Security-Policy every console answer carries: nothing outside this server. */
#define CONSOLE_CSP                                                                                    \
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; " \
    "frame-ancestors 'none'"

/* Turn the console on or off (on by default; --no-console). Call before serving. */
void console_enable(bool on);

/* True when the request is the console's: GET /console or GET /console/..., and it is on. */
bool console_wants(const char *method, const char *path);

/* Answer a console path: returns the HTTP status (200, or 404 for an unknown file) and sets
 * *body to a malloc'd copy (owned by the caller; NULL and 0 when out of memory, with 500),
 * *len to its size and *content_type to a static string. "/console" and "/console/" are
 * index.html. */
unsigned console_serve(const char *path, char **body, size_t *len, const char **content_type);

#endif
