/* Pieces of sandlot-monitor that do not depend on the backend: the
 * command line, the log, signals, the creator's ready pipe, the timeout
 * timer and the control socket's request lines. */
#ifndef SANDLOT_MONITOR_COMMON_H
#define SANDLOT_MONITOR_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define SL_MONITOR_USAGE \
  "usage: sandlot-monitor --home DIR --id ID --ready-fd N [--creator-pidfd N] [--backend vm]"

typedef struct sl_monitor_args {
  const char *home;
  const char *id;
  const char *backend; /* "process" unless --backend is given */
  int ready_fd;        /* -1 when not given */
  int creator_pidfd;   /* -1 unless auto_kill */
} sl_monitor_args;

/* Parse `--key value` pairs; -1 on an unknown key or a missing
 * --home or --id. */
int sl_monitor_parse_args(int argc, char **argv, sl_monitor_args *out);

/* Send the log (and stderr, for sanitizer reports) to
 * <dir>/log/monitor.log, at info level unless SANDLOT_LOG sets another
 * level. */
void sl_monitor_open_log(const char *dir);

/* Block SIGCHLD, SIGTERM, SIGINT and SIGHUP into a new signalfd (returned)
 * and become a child subreaper. Children must restore the signal mask. */
int sl_monitor_signals(sl_error *err);

/* Write "ok" or "err ENAME message" to the creator's ready pipe and close
 * it; *ready_fd becomes -1. Nothing happens when it is -1 already. */
void sl_monitor_answer(int *ready_fd, int rc, const sl_error *err);

/* Arm the realtime timer `timer_fd` for `deadline_ms` (ms since the
 * epoch), or disarm it with 0. */
int sl_monitor_arm(int timer_fd, int64_t deadline_ms, sl_error *err);

/* Accept one control connection and read its request line (without the
 * newline) into `line`. Returns the connection's fd, or -1 when there was
 * no complete line (the connection is closed then). */
int sl_monitor_read_request(int listen_fd, char *line, size_t len);

void sl_monitor_reply(int fd, const char *line);
void sl_monitor_reply_error(int fd, const sl_error *err);

/* Parse the argument of "set_timeout": whole seconds >= 0 (EINVAL). */
int sl_monitor_parse_timeout(const char *arg, int64_t *seconds, sl_error *err);

#endif
