/* Small process and path helpers of the process backend. */
#ifndef SANDLOT_PROC_UTIL_H
#define SANDLOT_PROC_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

/* Start time of `pid` (/proc/<pid>/stat field 22, clock ticks after
 * boot), or 0 when the process does not exist. */
uint64_t sl_pid_start_time(pid_t pid);

/* Whether `pid` runs and started at `start` (so it is not a reused pid).
 * A `start` of 0 only checks that the pid exists. */
int sl_pid_alive(pid_t pid, uint64_t start);

/* Whether `pid` is the sandlot-monitor of sandbox `id` in the store at
 * `home`, judged by its command line, so a reused pid does not count. */
int sl_monitor_is(pid_t pid, const char *home, const char *id);

/* The pid of the running monitor of sandbox `id`, found by scanning
 * /proc; 0 when there is none. */
pid_t sl_monitor_find(const char *home, const char *id);

/* Find the sandlot binary `name`: next to /proc/self/exe, else in
 * $SANDLOT_BUILD_DIR (set by ctest for test executables, which live in a
 * subdirectory of the build). ENOENT names both places. */
int sl_find_binary(const char *name, char *buf, size_t len, sl_error *err);

/* Connect a stream socket to the unix socket at `path`; a path longer
 * than sun_path is reached through /proc/self/fd/<dir fd>/<name>. */
int sl_unix_connect(const char *path, sl_error *err);

/* Bind and listen on `path` (same long-path rule); mode 0600. */
int sl_unix_listen(const char *path, sl_error *err);

/* Milliseconds since the epoch (CLOCK_REALTIME). */
int64_t sl_now_ms(void);

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t sl_monotonic_ms(void);

#endif
