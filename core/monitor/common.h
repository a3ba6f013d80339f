/* Pieces of sandlot-monitor that do not depend on the backend: the
 * command line, the log, signals, the creator's ready pipe, the timeout
 * timer and the control socket's connections (requests.c). */
#ifndef SANDLOT_MONITOR_COMMON_H
#define SANDLOT_MONITOR_COMMON_H

#include <poll.h>
#include <stdbool.h>
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

#define SL_MONITOR_MAX_CONNS 16

/* A control connection whose request line is still arriving. */
typedef struct sl_monitor_conn {
  int fd;              /* non-blocking */
  size_t used;
  int64_t deadline_ms; /* monotonic: closed unanswered after this */
  char line[256];
} sl_monitor_conn;

/* Handle the request `line` (without its newline) that arrived on `fd`.
 * Returns true when the handler keeps `fd` open for a reply it sends
 * later; false closes it. */
typedef bool (*sl_monitor_request_fn)(void *data, int fd, const char *line);

/* The control socket's connections. They are non-blocking and read in
 * the monitor's poll loop, so a client that connects and sends nothing
 * (or half a line) delays neither the timeout nor SIGCHLD handling. A
 * connection without a complete line after 1 s is closed. */
typedef struct sl_monitor_requests {
  sl_monitor_conn conns[SL_MONITOR_MAX_CONNS];
  int count;
  sl_monitor_request_fn handle;
  void *data;          /* passed to handle */
  const char *id;      /* the sandbox, for the log */
} sl_monitor_requests;

/* Accept one connection on `listen_fd` and read what it has sent. A
 * connection beyond SL_MONITOR_MAX_CONNS gets "err EBUSY ..." and is
 * closed. */
void sl_monitor_requests_accept(sl_monitor_requests *r, int listen_fd);
/* Fill one pollfd per connection in `fds` (room for
 * SL_MONITOR_MAX_CONNS) and return the count. */
int sl_monitor_requests_poll(const sl_monitor_requests *r, struct pollfd *fds);
/* Read the connections that `fds` (from sl_monitor_requests_poll)
 * report ready, handle complete lines and close expired connections. */
void sl_monitor_requests_ready(sl_monitor_requests *r, const struct pollfd *fds, int count);
/* Milliseconds until the next connection expires, or -1 when none. */
int sl_monitor_requests_timeout(const sl_monitor_requests *r);
/* Close every connection still waiting for its line. */
void sl_monitor_requests_close(sl_monitor_requests *r);

void sl_monitor_reply(int fd, const char *line);
void sl_monitor_reply_error(int fd, const sl_error *err);

/* Parse the argument of "set_timeout": whole seconds from 0 to
 * SL_TIMEOUT_MAX_SEC (EINVAL otherwise). */
int sl_monitor_parse_timeout(const char *arg, int64_t *seconds, sl_error *err);

#endif
