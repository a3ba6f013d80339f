/* sandlot-agent internals: one event loop over the listening socket (or a
 * stream fd), client connections, child pipes and a signalfd. The agent is
 * single-threaded; every handler runs to completion on the loop. */
#ifndef SANDLOT_AGENT_H
#define SANDLOT_AGENT_H

#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "proto.h"

#define AGENT_DEFAULT_SOCKET "/run/sandlot/agent.sock"
#define AGENT_DEFAULT_BUFFER (1u << 20)
#define AGENT_MIN_BUFFER 4096u
#define AGENT_MAX_BUFFER (64u << 20)
/* Tracked processes, running or exited and not yet released. */
#define AGENT_MAX_PROCS 1024
/* Output events stop while a connection has this much unsent output, and
 * its requests stop being read above CONN_PAUSE_INPUT. */
#define CONN_OUTPUT_HIGH (1u << 20)
#define CONN_PAUSE_INPUT (8u << 20)
#define OUTPUT_EVENT_MAX (64u << 10)
/* A quiesce waits this long for the other connections to take the replies
 * to the requests they have sent, then closes them regardless. The host's
 * quiesce call waits 5 s for its own reply. */
#define AGENT_QUIESCE_DRAIN_MS 2000
/* Maximum time a quiesce may keep new connections waiting. */
#define AGENT_QUIESCE_HOLD_MAX_MS (60 * 60 * 1000)

enum watch_kind { W_LISTEN, W_SIGNAL, W_CONN, W_PIPE };

/* What an epoll event points at. */
typedef struct watch {
  enum watch_kind kind;
  void *obj;
  int fd_index; /* W_PIPE: 0 stdin, 1 stdout, 2 stderr */
} watch;

typedef struct conn conn;
typedef struct proc proc;

struct conn {
  int fd;
  unsigned long serial; /* for logs */
  watch w;
  sl_parser in;
  sl_buf out;
  size_t out_pos;   /* bytes of `out` already written */
  uint32_t events;  /* current epoll interest */
  int stream;       /* a --stream-fd or --serial connection: never closed */
  int down;         /* stream: the peer hung up; waiting for it to return */
  int64_t recheck_ms;
  int close_after_flush;
  int draining;     /* quiesce: serve the requests sent so far, then close */
  uint64_t frames_read; /* request frames read, for the CLOSING message */
  int dead;
  conn *next;
};

/* Bounded output buffer of one stream, addressed by absolute offsets:
 * bytes [start, end) are held; everything before `start` was released. */
typedef struct ring {
  uint8_t *data;
  size_t cap;
  uint64_t start;
  uint64_t end;
} ring;

typedef struct stdin_chunk {
  conn *c; /* reply target, NULL when the reply is not needed */
  uint32_t id;
  uint8_t *data;
  size_t len;
  size_t pos;
  struct stdin_chunk *next;
} stdin_chunk;

typedef struct waiter {
  conn *c;
  uint32_t id;
  int64_t deadline_ms; /* monotonic, 0 for none */
  struct waiter *next;
} waiter;

struct proc {
  int64_t id;
  pid_t pid;
  char **argv;     /* as requested (COMMAND runs as /bin/sh -c) */
  int64_t start_time_ms;
  int64_t deadline_ms; /* monotonic, 0 for no timeout */
  int running;
  int status;          /* wait status once exited */
  int timed_out;
  int fds[3];          /* stdin (write end), stdout, stderr; -1 when closed */
  watch w[3];
  uint32_t fd_events[3];
  ring out[3];         /* out[1] stdout, out[2] stderr */
  size_t out_alloc[3]; /* allocated bytes of out[i].data, at most out[i].cap */
  stdin_chunk *stdin_head;
  int stdin_close_pending;
  conn *close_c;       /* CLOSE_STDIN request waiting for the queue to drain */
  uint32_t close_id;
  conn *att;           /* streaming attachment, NULL when detached */
  uint32_t att_id;
  uint64_t sent[3];    /* next offset to send on the attachment */
  waiter *waiters;
  int dead;
  proc *next;
};

/* Byte streams served at once: the agent ports of a VM (one per host
 * process that talks to the guest at the same time). */
#define AGENT_MAX_STREAMS 16

typedef struct agent_options {
  const char *listen_path;
  const char *serial_paths[AGENT_MAX_STREAMS];
  int nserial;
  int stream_fds[AGENT_MAX_STREAMS];
  int nstream_fds;
  const char *root;
  const char *env_file; /* NUL-separated NAME=value entries to set, or NULL */
  const char *cwd;      /* working directory to create and enter, or NULL */
  size_t buffer_size;
} agent_options;

typedef struct agent {
  int epfd;
  int listen_fd;
  int signal_fd;
  watch listen_w, signal_w;
  conn *conns;
  proc *procs;
  int nprocs;
  int64_t next_proc_id;
  unsigned long next_conn_serial;
  int64_t listen_resume_ms; /* accept paused after EMFILE until then, or 0 */
  int listen_watched;       /* the listener is in the epoll set */
  /* A quiesce with a hold leaves new connections waiting in the listen
   * backlog until then (monotonic), or until SL_QUIESCE_END_SIGNAL; 0
   * when there is no hold. */
  int64_t hold_until_ms;
  conn *quiesce_conn;       /* the quiesce request waiting for the drain */
  uint32_t quiesce_id;
  int64_t drain_until_ms;
  int64_t started_ms;
  size_t buffer_size;
  int quit;
} agent;

extern agent g_agent;

int64_t now_ms(void);      /* CLOCK_MONOTONIC */
int64_t wall_ms(void);     /* CLOCK_REALTIME */
void watch_add(int fd, uint32_t events, watch *w);
void watch_mod(int fd, uint32_t events, watch *w);
void watch_del(int fd);
/* Stop accepting connections until `until_ms` (monotonic) or the end of
 * the quiesce, whichever comes first. */
void listener_hold(int64_t until_ms);
/* Accept connections again; `reason` goes to the log. */
void quiesce_end(const char *reason);

/* conn.c */
conn *conn_new(int fd, int stream);
void conn_on_event(conn *c, uint32_t events);
void conn_kill(conn *c, const char *why);
void conn_flush(conn *c);
void conn_update_events(conn *c);
void conns_check_timers(int64_t now, int64_t *next);
void conns_reap(void);
/* Close every connection except `requester`, each once the replies to
 * the requests it sent are written, then reply OK to request `id` of
 * `requester` and close that one too. */
void conns_quiesce(conn *requester, uint32_t id);
/* Finish a quiesce whose drain is over; sets *next to its deadline. */
void quiesce_check(int64_t now, int64_t *next);
/* A reply under construction: put fields into `b`, then reply_end(). A
 * reply to a connection that is gone is built and dropped. */
typedef struct reply {
  conn *c;
  sl_buf *b;
  size_t start;
} reply;
reply reply_begin(conn *c, uint8_t type, uint32_t id);
void reply_end(reply *r);
void reply_ok(conn *c, uint32_t id);
void reply_error(conn *c, uint32_t id, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void reply_sl_error(conn *c, uint32_t id, const sl_error *err);

/* proc.c */
proc *proc_find(int64_t id);
/* Release stream i's output before `offset`: ERANGE when already released,
 * EINVAL past the end. */
int output_release(proc *p, int i, uint64_t offset, sl_error *err);
void put_exit_fields(sl_buf *b, const proc *p);
void send_exit(conn *c, uint32_t id, const proc *p);
void pump_and_flush(proc *p);
/* End the attachment's request with an error (another attach took over). */
void detach(proc *p, int code, const char *why);
int stdin_queue(proc *p, conn *c, uint32_t id, const uint8_t *data, size_t len);
void stdin_write_some(proc *p);
void proc_on_pipe(proc *p, int index, uint32_t events);
void procs_reap_children(void);
void procs_check_timers(int64_t now, int64_t *next);
void procs_forget_conn(conn *c);
void procs_pump(conn *c);
void procs_free_dead(void);
void procs_terminate_all(int sig);

/* proc_requests.c */
void proc_handle(conn *c, const sl_frame *f);

/* spawn.c: fork and exec with the exec failure reported through a
 * close-on-exec pipe. On success fills pid and fds[0..2] (non-blocking,
 * close-on-exec, stdin write end and stdout/stderr read ends). */
int spawn_process(const char *path, char *const argv[], char *const envp[], const char *cwd,
                  pid_t *pid, int fds[3], sl_error *err);
/* Resolve `name` on the PATH of `envp` as execvp would (names with a '/'
 * are returned as they are). Returns a malloc'd path or fails with ENOENT. */
int resolve_program(const char *name, char *const envp[], char **out, sl_error *err);
/* Build the child environment: the agent's own, overridden by `overrides`
 * ("NAME=value" strings). */
int build_env(char *const overrides[], char ***out, sl_error *err);

/* files.c */
void files_handle(conn *c, const sl_frame *f);

/* system.c */
void system_handle(conn *c, const sl_frame *f);

#endif
