/* QMP (the QEMU Machine Protocol) clients.
 *
 * QEMU sends one JSON object per line: a greeting on connect, then replies
 * ({"return": ...} or {"error": {"class", "desc"}}) carrying the "id" of
 * their command, and asynchronous events ({"event", "data", "timestamp"})
 * at any time. Commands other than qmp_capabilities are rejected until the
 * client sends qmp_capabilities; both clients do that on connect.
 *
 * Two clients share the parser:
 * - sl_qmp: on a libuv loop, replies and events as callbacks;
 * - sl_qmp_sync: blocking with timeouts, for core operations that run on
 *   the uv threadpool or in a child process. It can also pass a file
 *   descriptor (getfd with SCM_RIGHTS), which a libuv stream cannot.
 *
 * A QMP error reply is -EIO with "QMP <command> failed: <class>: <desc>". */
#ifndef SANDLOT_QMP_H
#define SANDLOT_QMP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "error.h"

typedef enum {
  SL_QMP_GREETING,
  SL_QMP_RETURN,
  SL_QMP_ERROR,
  SL_QMP_EVENT,
} sl_qmp_kind;

/* One parsed message. `root` owns everything; the other pointers borrow
 * from it. */
typedef struct sl_qmp_msg {
  sl_qmp_kind kind;
  json_t *root;
  json_t *value;           /* "return" value, event "data", or NULL */
  const char *id;          /* the command id for replies, else NULL */
  const char *event;       /* event name for SL_QMP_EVENT */
  const char *error_class; /* for SL_QMP_ERROR */
  const char *error_desc;  /* for SL_QMP_ERROR */
} sl_qmp_msg;

/* Parse one message (a line without its terminator). Returns 0, or -EPROTO
 * for text that is not a QMP message. */
int sl_qmp_parse(const char *text, size_t len, sl_qmp_msg *msg, sl_error *err);
void sl_qmp_msg_clear(sl_qmp_msg *msg);

/* Serialize a command line: {"execute": command, "arguments": args, "id": id}
 * plus "\r\n". `args` may be NULL. Returns a malloc'd string or NULL. */
char *sl_qmp_format_command(const char *command, const json_t *args, const char *id);

/* Blocking client. */
typedef struct sl_qmp_sync sl_qmp_sync;

/* Connect to the QMP socket at `path`, retrying while the socket does not
 * exist or refuses (QEMU still starting) until `timeout_ms` has passed, then
 * read the greeting and negotiate capabilities. */
int sl_qmp_sync_connect(const char *path, int timeout_ms, sl_qmp_sync **out, sl_error *err);

/* Run `command` with `args` (a JSON object, reference stolen, may be NULL)
 * and wait up to `timeout_ms` for its reply. On success `*ret` (if not NULL)
 * receives a new reference to the "return" value. Events that arrive
 * meanwhile are queued for sl_qmp_sync_wait_event(). */
int sl_qmp_sync_execute(sl_qmp_sync *q, const char *command, json_t *args, json_t **ret,
                        int timeout_ms, sl_error *err);

/* Pass `fd` to QEMU under `name` (the getfd command with SCM_RIGHTS), for
 * URIs like "fd:<name>". */
int sl_qmp_sync_send_fd(sl_qmp_sync *q, const char *name, int fd, int timeout_ms,
                        sl_error *err);

/* Accept or reject an event: return true to stop waiting. */
typedef bool (*sl_qmp_event_match)(const char *event, json_t *data, void *arg);

/* Wait for the first event (queued or new) that `match` accepts, up to
 * `timeout_ms`. Events it rejects are dropped. */
int sl_qmp_sync_wait_event(sl_qmp_sync *q, sl_qmp_event_match match, void *arg,
                           int timeout_ms, sl_error *err);

void sl_qmp_sync_close(sl_qmp_sync *q);

/* The connection's socket, for poll(2) by a caller that drains events
 * with sl_qmp_sync_wait_event() and a zero timeout when it is readable. */
int sl_qmp_sync_fd(const sl_qmp_sync *q);

/* Loop client. */
typedef struct sl_qmp sl_qmp;

/* The reply to one command: status 0 with `ret` (borrowed, valid during the
 * call) or a negative errno with `err` (-ECANCELED when the client closed,
 * -EPIPE when QEMU closed the connection). */
typedef void (*sl_qmp_reply_cb)(sl_qmp *q, int status, json_t *ret, const sl_error *err,
                                void *data);

/* An event (name and borrowed data), or, with event NULL, the end of the
 * connection: status 0 when the client closed it, else a negative errno. */
typedef void (*sl_qmp_event_cb)(sl_qmp *q, const char *event, json_t *data, int status,
                                void *data_arg);

/* Called once when the connection is ready (capabilities negotiated) or has
 * failed to get there. */
typedef void (*sl_qmp_ready_cb)(sl_qmp *q, int status, const sl_error *err, void *data);

/* Start connecting to `path` on `loop`. Commands may be queued with
 * sl_qmp_execute() at once; they are sent after qmp_capabilities. */
int sl_qmp_open(uv_loop_t *loop, const char *path, sl_qmp_ready_cb ready,
                sl_qmp_event_cb on_event, void *data, sl_qmp **out, sl_error *err);

/* Send `command` with `args` (reference stolen, may be NULL). */
int sl_qmp_execute(sl_qmp *q, const char *command, json_t *args, sl_qmp_reply_cb cb,
                   void *data, sl_error *err);

/* Close the connection. Pending commands get -ECANCELED; the memory is
 * released once libuv has closed the handle. Idempotent. */
void sl_qmp_close(sl_qmp *q);

#endif
