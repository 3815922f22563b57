/* console.c: maps /console paths to the compiled-in files of server/console/.
 *
 * The table is generated from those files at build time and never changes at run time, so
 * a lookup is a scan of a handful of names; only names in the table are served (no path is
 * ever joined to a directory), and a name with anything but [A-Za-z0-9._-] cannot match.
 * The on/off switch is written once by main before the listener starts. */
#include "console.h"

#include <stdlib.h>
#include <string.h>

static bool enabled = true;

void console_enable(bool on) { enabled = on; }

bool console_wants(const char *method, const char *path)
{
    if (!enabled || strcmp(method, "GET") || strncmp(path, "/console", 8))
        return false;
    return path[8] == 0 || path[8] == '/';
}

static const char *type_of(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},   {".svg", "image/svg+xml"},
        {".json", "application/json"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(dot, types[i].ext))
            return types[i].type;
    return "application/octet-stream";
}

static unsigned answer(const void *data, size_t n, const char *type, char **body, size_t *len,
                       const char **content_type)
{
    *body = malloc(n + 1);
    if (!*body) {
        *len = 0;
        *content_type = "text/plain; charset=utf-8";
        return 500;
    }
    memcpy(*body, data, n);
    (*body)[n] = 0;
    *len = n;
    *content_type = type;
    return 200;
}

unsigned console_serve(const char *path, char **body, size_t *len, const char **content_type)
{
    const char *name = path + 8; /* after "/console" */
    if (*name == '/')
        name++;
    if (!*name)
        name = "index.html";
    for (size_t i = 0; i < console_nfiles; i++)
        if (!strcmp(console_files[i].name, name))
            return answer(console_files[i].data, console_files[i].len, type_of(name), body, len,
                          content_type);
    static const char missing[] = "Not found\n";
    unsigned st = answer(missing, sizeof missing - 1, "text/plain; charset=utf-8", body, len, content_type);
    return st == 200 ? 404 : st;
}
