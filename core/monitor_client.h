/* Requests to a sandbox's monitor over its control socket
 * (sandboxes/<id>/monitor.sock).
 *
 * Protocol: the client sends one line and reads one line back, then the
 * monitor closes the connection.
 *
 *     kill                 ->  ok              (after everything is released)
 *     status               ->  ok state=running init_pid=123 deadline_ms=0
 *     set_timeout SECONDS  ->  ok deadline_ms=...   (0 removes the timeout)
 *     pause                ->  ok              (dumped, paused, monitor exits)
 *     pause files          ->  ok              (files kept only, monitor exits)
 *     rollback SNAPSHOT_ID ->  ok              (running from the snapshot)
 *
 * The caller of pause and rollback holds the sandbox's op.lock. The
 * reply comes once the operation is done (CRIU runs in between).
 *
 * A failure reads "err ENAME message". */
#ifndef SANDLOT_MONITOR_CLIENT_H
#define SANDLOT_MONITOR_CLIENT_H

#include <stddef.h>

#include "error.h"

/* Start sandlot-monitor for sandbox `id` of the store at `home`: detached
 * (double fork, setsid, stdio on /dev/null) with `--home HOME --id ID
 * --ready-fd 3`, then `extra` (NULL-terminated, may be NULL). With
 * `auto_kill` it also gets `--creator-pidfd 4`, a pidfd of the calling
 * process. Waits up to `ready_timeout_ms` for the monitor's ready line:
 * 0 on "ok", the monitor's error on "err", EIO when it exited without a
 * line, ETIMEDOUT after the wait. */
int sl_monitor_start(const char *home, const char *id, const char *const *extra, int auto_kill,
                     int ready_timeout_ms, sl_error *err);

/* Send `request` and wait up to `timeout_ms` for the response. On "ok"
 * writes the text after "ok " to `reply` (may be NULL) and returns 0; on
 * "err" returns the named errno with the monitor's message. ECONNREFUSED
 * or ENOENT when no monitor listens. */
int sl_monitor_request(const char *socket_path, const char *request, int timeout_ms,
                       char *reply, size_t len, sl_error *err);

/* Parse one response line (without the newline). Pure. */
int sl_monitor_parse_reply(const char *line, char *reply, size_t len, sl_error *err);

#endif
