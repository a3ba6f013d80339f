/* Host-side clients of the sandbox agent (protocol in core/proto.h).
 *
 * sl_agent is the asynchronous client on a libuv loop: many requests share
 * one connection, and every reply frame goes to the callback of its
 * request. sl_agent_exec_start() streams a process's output and survives a
 * dropped connection by reconnecting and re-attaching at the offsets it has
 * delivered, so no output is lost or repeated.
 *
 * sl_agent_conn is a small blocking client (plain socket, timeouts) for
 * code that runs on the uv threadpool or in the monitor, e.g. to quiesce
 * the agent before a dump.
 *
 * Ownership: the client copies every buffer and string passed in. Frames,
 * bytes and errors passed to callbacks are valid only during the call.
 * Every callback runs on the loop thread. */
#ifndef SANDLOT_AGENT_CLIENT_H
#define SANDLOT_AGENT_CLIENT_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "error.h"
#include "proto.h"

typedef struct sl_agent sl_agent;
typedef struct sl_agent_exec sl_agent_exec;

typedef struct sl_agent_options {
  int64_t connect_timeout_ms; /* per attempt, default 5000 */
  int reconnect_attempts;     /* for re-attaching execs, default 50 */
  int64_t reconnect_delay_ms; /* between attempts, default 100 */
  int sync;                   /* start each connection with a sync marker (byte
                                 streams behind a QEMU chardev) */
  int vm_ports;               /* `path` is a file in the folder of a VM's agent
                                 ports (its agent.sock): connect through a free
                                 port, holding its lock while connected
                                 (agent_ports.h), and release it after 1 s
                                 without requests or processes. Implies sync.
                                 When every port stays held for the connect
                                 timeout, the connection fails with EBUSY. */
} sl_agent_options;

/* Called once when a connection attempt ends; `err` is NULL on success. */
typedef void (*sl_agent_done_cb)(sl_agent *a, const sl_error *err, void *data);

/* Called for each reply frame of a request. The last call is the one with
 * sl_msg_is_final(msg->type) or with `err` set; `err` is set for ERROR
 * replies (msg is that frame) and for local failures such as a lost
 * connection (msg is NULL). */
typedef void (*sl_agent_reply_cb)(sl_agent *a, const sl_frame *msg, const sl_error *err,
                                  void *data);

/* Create a client for the agent socket at `path` (for a process sandbox,
 * /proc/<pid>/root/run/sandlot/agent.sock). `opts` may be NULL. Returns
 * NULL when out of memory. Nothing connects until the first request or
 * sl_agent_connect(). */
sl_agent *sl_agent_new(uv_loop_t *loop, const char *path, const sl_agent_options *opts);

/* Connect now (requests connect on their own too). `cb` gets ENOENT when
 * the socket does not exist, ECONNREFUSED when no process listens on it,
 * and ETIMEDOUT when connecting or syncing takes longer than the timeout. */
void sl_agent_connect(sl_agent *a, sl_agent_done_cb cb, void *data);

/* Hold the client around a dump until sl_agent_resume(): new requests
 * wait in its queue, and it neither connects nor reconnects. A ready
 * connection stays open until the agent's quiesce closes it, so the
 * replies to requests already written still arrive. A connection not
 * ready yet is dropped. After the agent's CLOSING, requests it did not
 * read wait in the queue too and go out on the next connection, also
 * when the client was not held. */
void sl_agent_pause(sl_agent *a);
void sl_agent_resume(sl_agent *a);

/* Fail every pending request with ECANCELED (their callbacks run before
 * this returns), close the connection and free the client once libuv has
 * closed its handles. The pointer must not be used afterwards. */
void sl_agent_close(sl_agent *a);
/* sl_agent_close() that fails the pending requests with `reason` (the
 * sandbox rolled back or ended, say) instead. */
void sl_agent_close_with(sl_agent *a, const sl_error *reason);

/* Send the frame in `frame` (built with sl_frame_begin ... sl_frame_end;
 * its request id is replaced). The client copies the bytes. `cb` may be
 * NULL for requests without a reply (ACK). Fails with EINVAL when the
 * client is closed. */
int sl_agent_request(sl_agent *a, const sl_buf *frame, sl_agent_reply_cb cb, void *data,
                     sl_error *err);

/* Convert an ERROR frame into `err` (code from its name, EIO if unknown). */
void sl_agent_error_from_frame(const sl_frame *f, sl_error *err);

/* ---- Processes ---------------------------------------------------------- */

typedef struct sl_exec_spec {
  const char *const *argv; /* NULL-terminated; or use `command` */
  const char *command;     /* run by /bin/sh -c */
  const char *const *env;  /* "NAME=value" overrides, NULL-terminated, optional */
  const char *cwd;         /* optional */
  const void *stdin_data;  /* written to stdin at start, optional */
  size_t stdin_len;
  int stdin_open;          /* keep stdin open for sl_agent_write_stdin() */
  int64_t timeout_ms;      /* 0: none; the process group is killed when it expires */
  int64_t buffer_size;     /* per stream in the agent; 0: the agent's default */
} sl_exec_spec;

typedef struct sl_exit_status {
  int64_t proc;
  int64_t pid;
  int exited;    /* 1: exit_code is valid; 0: killed by `signal` */
  int exit_code;
  int signal;
  int timed_out;
  uint64_t stdout_bytes;
  uint64_t stderr_bytes;
} sl_exit_status;

typedef struct sl_exec_callbacks {
  /* The process runs; `proc` is its agent process id. Optional. */
  void (*on_start)(sl_agent_exec *x, int64_t proc, int64_t pid, void *data);
  /* Output bytes of fd 1 or 2, in order and never twice, also across
   * reconnects. Bytes are lost only when another client released them
   * first (READ or ACK on the same process). */
  void (*on_output)(sl_agent_exec *x, int fd, const uint8_t *bytes, size_t len, void *data);
  /* Called once at the end: `st` with the exit status, or `err` (then `st`
   * is NULL) when the process could not start or could not be followed.
   * The handle is freed after this returns. */
  void (*on_exit)(sl_agent_exec *x, const sl_exit_status *st, const sl_error *err,
                  void *data);
} sl_exec_callbacks;

/* Start a process and stream its output. `*out` (optional) receives a
 * handle that stays valid until on_exit returns. Errors from the agent
 * (ENOENT "program not found: NAME") arrive through on_exit. */
int sl_agent_exec_start(sl_agent *a, const sl_exec_spec *spec, const sl_exec_callbacks *cbs,
                        void *data, sl_agent_exec **out, sl_error *err);

/* Follow a process started earlier (e.g. by another client), from the
 * given offsets; `cbs->on_start` is not called. */
int sl_agent_exec_attach(sl_agent *a, int64_t proc, uint64_t stdout_offset,
                         uint64_t stderr_offset, const sl_exec_callbacks *cbs, void *data,
                         sl_agent_exec **out, sl_error *err);

/* Stop following the process: on_exit runs now with ECANCELED, and the
 * handle is freed. The process keeps running in the agent, its output
 * kept for a later sl_agent_exec_attach(). */
void sl_agent_exec_cancel(sl_agent_exec *x);

/* The agent process id, or 0 before on_start. */
int64_t sl_agent_exec_proc(const sl_agent_exec *x);

/* Single requests on a process; `cb` gets the OK or ERROR reply. */
int sl_agent_write_stdin(sl_agent *a, int64_t proc, const void *bytes, size_t len,
                         sl_agent_reply_cb cb, void *data, sl_error *err);
int sl_agent_close_stdin(sl_agent *a, int64_t proc, sl_agent_reply_cb cb, void *data,
                         sl_error *err);
int sl_agent_signal(sl_agent *a, int64_t proc, int signal, sl_agent_reply_cb cb, void *data,
                    sl_error *err);

/* ---- Files -------------------------------------------------------------- */

/* Read a whole file in chunks. `bytes` is valid only during the call. */
typedef void (*sl_agent_file_cb)(sl_agent *a, const uint8_t *bytes, size_t len,
                                 const sl_error *err, void *data);
int sl_agent_read_file(sl_agent *a, const char *path, sl_agent_file_cb cb, void *data,
                       sl_error *err);
/* sl_agent_read_file() for a file of at most `max` bytes (0: any size).
 * A larger file fails with EFBIG, after the first chunk, before the rest
 * is transferred. */
int sl_agent_read_file_max(sl_agent *a, const char *path, uint64_t max, sl_agent_file_cb cb,
                           void *data, sl_error *err);

/* Write `len` bytes (copied) to `path` in chunks, creating and truncating
 * it; `flags` may add SL_FILE_PARENTS, SL_FILE_EXCL, or SL_FILE_APPEND
 * (append to the file instead of truncating it). `cb` receives NULL
 * bytes and the error, if any. */
int sl_agent_write_file(sl_agent *a, const char *path, const void *bytes, size_t len,
                        int mode, int flags, sl_agent_file_cb cb, void *data, sl_error *err);

/* ---- Blocking client ---------------------------------------------------- */

typedef struct sl_agent_conn {
  int fd;
  int is_socket;  /* send/recv; otherwise read/write (a tty or a pipe) */
  int timeout_ms; /* per call */
  uint32_t next_id;
  sl_parser in;
} sl_agent_conn;

/* Connect to the agent socket at `path`. `sync` sends a sync marker first
 * and skips any stale bytes before the agent's reply. Fails with ENOENT,
 * ECONNREFUSED or ETIMEDOUT like sl_agent_connect(). */
int sl_agent_conn_open(sl_agent_conn *c, const char *path, int timeout_ms, int sync,
                       sl_error *err);
/* Use an fd that is already connected (a socketpair, a chardev socket).
 * The connection owns it afterwards, except when this fails. */
int sl_agent_conn_attach_fd(sl_agent_conn *c, int fd, int timeout_ms, int sync, sl_error *err);
void sl_agent_conn_close(sl_agent_conn *c);

/* Send one request (built with id 0) and wait for its final reply, which is
 * copied into `reply` (a caller-owned buffer, frame bytes from the length
 * field on) and parsed into `final` (pointing into `reply`). Events before
 * it go to `on_event` when given; each OUTPUT event is acknowledged, so
 * streamed output never stalls on a full agent buffer. An ERROR reply
 * becomes the return value and `err`. */
int sl_agent_conn_call(sl_agent_conn *c, const sl_buf *request,
                       void (*on_event)(const sl_frame *f, void *data), void *data,
                       sl_buf *reply, sl_frame *final, sl_error *err);

/* Connect, send quiesce, and wait until the agent has closed the
 * connection. The agent replies once it has closed every other
 * connection, after their replies to the requests they had sent. */
int sl_agent_quiesce(const char *path, int timeout_ms, sl_error *err);

/* sl_agent_quiesce() before a CRIU dump: the agent also leaves new
 * connections waiting (not accepted) for up to `hold_ms`, or until
 * sl_agent_end_quiesce(), so that no host connection is open in the tree
 * when CRIU dumps it. A tree restored from the dump starts quiesced too.
 * NOTE: a client that closes its connection before the agent accepted
 * it fails a dump that runs meanwhile ("closed in-flight socket"). */
int sl_agent_quiesce_hold(const char *path, int timeout_ms, int hold_ms, sl_error *err);

/* The hold of a quiesce before a dump. It must last from the quiesce
 * until CRIU freezes the tree, which takes milliseconds (the frozen agent
 * accepts nothing anyway), and the end signal cuts it short after the
 * dump. A host that dies in between leaves new connections waiting at
 * most this long. */
#define SL_AGENT_DUMP_HOLD_MS 10000

/* End the quiesce of the agent with host pid `agent_pid` (a signal, which
 * a frozen agent takes at the thaw). `start_time` (sl_pid_start_time, 0
 * to skip the check) guards against a reused pid. An agent that is gone
 * is not an error. */
int sl_agent_end_quiesce(pid_t agent_pid, uint64_t start_time, sl_error *err);

/* Hooks after a fork starts: set the hostname (when not NULL), add the
 * random bytes (when len > 0), then run `on_fork` through /bin/sh -c (when
 * not NULL) and wait up to timeout_ms for it. `*exit_code` gets its exit
 * code; a command killed by a signal fails with ECHILD. */
int sl_agent_post_restore(sl_agent_conn *c, const char *hostname, const void *entropy,
                          size_t entropy_len, const char *on_fork, int64_t timeout_ms,
                          int *exit_code, sl_error *err);

#endif
