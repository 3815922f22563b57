/* klog.h: the diagnostics of every layer (server/, api/, storage/), filtered by --log-level.
 *
 * A leaf below storage/: it includes nothing of kinesd, so each layer's include list may name
 * common/ without gaining a way upward (see the Makefile). Messages go to stderr as one line
 * each, "kinesd: <message>", written with one write(2) so lines of different threads never
 * interleave. The level is a process-wide setting read with a relaxed atomic load: a message
 * below it costs one load and a compare, and its arguments are not formatted. */
#ifndef KINESD_KLOG_H
#define KINESD_KLOG_H

#include <stdbool.h>

enum klog_level {
    KLOG_ERROR, /* the server cannot do what it was asked (a failed write, an unreadable row) */
    KLOG_WARN,  /* something is wrong but handled (a retry, a skipped entry) */
    KLOG_INFO,  /* what an operator wants to see once: startup, reloads, shutdown */
    KLOG_DEBUG, /* what a developer chasing a problem wants */
};

/* Messages at a level above l are dropped from now on (default KLOG_INFO). Any thread. */
void klog_set_level(enum klog_level l);

/* "error", "warn", "info" or "debug" into *out. Returns 0, or -1 (out untouched). */
int klog_parse_level(const char *name, enum klog_level *out);

/* Whether a message at level l is written (to skip work done only for a message). */
bool klog_enabled(enum klog_level l);

/* Write one line "kinesd: <fmt...>" at level l (a trailing newline in fmt is not doubled;
 * lines longer than 4 KiB are cut). Thread-safe. */
void klog(enum klog_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
