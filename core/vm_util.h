/* Helpers of the VM backend: child processes with their output, files.
 * All of them block; callers run them on the uv threadpool. Directory
 * creation and removal are in run.h. */
#ifndef SANDLOT_VM_UTIL_H
#define SANDLOT_VM_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "error.h"
#include "run.h"

/* Run argv[0] (an absolute path or a name looked up on PATH) with stdin on
 * /dev/null and wait for it. When `output` is not NULL it receives the
 * child's stdout (malloc'd, NUL-terminated). A non-zero exit is -EIO with
 * the program, the exit status and the last lines of its stderr. */
int sl_run_output(const char *const argv[], char **output, sl_error *err);

/* sl_run_output() with the working directory `cwd` (NULL: unchanged). */
int sl_run_output_in(const char *cwd, const char *const argv[], char **output, sl_error *err);

/* Copy `src` to a new file `dst` (mode 0600), keeping holes: only the data
 * ranges of `src` (SEEK_DATA/SEEK_HOLE) are copied. `dst` must not exist. */
int sl_copy_sparse(const char *src, const char *dst, sl_error *err);

/* Write `len` bytes to `path` through a temporary file and rename(2), so a
 * reader sees the old content or the new one. */
int sl_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                         sl_error *err);

/* Read a whole file (at most `max` bytes) into a malloc'd, NUL-terminated
 * buffer. */
int sl_read_file(const char *path, size_t max, char **data, size_t *len, sl_error *err);

bool sl_path_exists(const char *path);

/* Milliseconds on CLOCK_MONOTONIC, with a fraction, for timings. */
double sl_clock_ms(void);

#endif
