/* Running helper programs (mmdebstrap, cp) and removing directory trees. */
#ifndef SANDLOT_RUN_H
#define SANDLOT_RUN_H

#include "error.h"

/* Receives one line of a program's output, without the newline. */
typedef void (*sl_line_fn)(const char *line, void *data);

/* Run argv[0] (an absolute path, or a name looked up on PATH) with stdin on
 * /dev/null and stdout and stderr merged into one pipe whose lines go to
 * `on_line` (may be NULL). Waits for the program. A program that exits
 * non-zero or dies fails with EIO; the message ends with its last output
 * lines. Safe to call from any thread: the child only calls async-signal-
 * safe functions before exec. */
int sl_run(char *const argv[], sl_line_fn on_line, void *data, sl_error *err);

/* Remove `path` and everything below it, like `rm -rf`, without crossing
 * into other mounted file systems: a mount point below `path` fails the
 * call with EBUSY and is left alone. A missing path is not an error. */
int sl_remove_tree(const char *path, sl_error *err);

/* Create a directory and its missing parents with `mode`. */
int sl_mkdir_p(const char *path, unsigned mode, sl_error *err);

/* Format a path into `buf` like snprintf. Fails with ENAMETOOLONG,
 * naming the start of the path, when it does not fit, so that no caller
 * goes on with a cut path. */
int sl_path_format(char *buf, size_t len, sl_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
