/* Process requests: exec, attach, ack, read, stdin, signal, wait, list,
 * release, detach. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"

/* Read an optional i64 field: `def` when absent. */
static int get_i64(const sl_frame *f, uint8_t key, int64_t def, int64_t *out, sl_error *err) {
  *out = def;
  int rc = sl_frame_get_i64(f, key, out, err);
  return rc < 0 ? rc : 0;
}

typedef struct exec_request {
  char **argv;
  char *command;
  char **env;
  char *cwd;
  const uint8_t *stdin_data;
  size_t stdin_len;
  int has_stdin;
  int64_t stdin_open, timeout_ms, stream, buffer_size;
} exec_request;

static void exec_request_free(exec_request *r) {
  sl_strv_free(r->argv);
  sl_strv_free(r->env);
  free(r->command);
  free(r->cwd);
}

static int parse_exec(const sl_frame *f, exec_request *r, sl_error *err) {
  memset(r, 0, sizeof *r);
  size_t argc = 0;
  if (sl_frame_get_strv(f, SL_F_ARGV, &r->argv, &argc, err) < 0 ||
      sl_frame_get_strv(f, SL_F_ENV, &r->env, NULL, err) < 0 ||
      sl_frame_get_str(f, SL_F_COMMAND, &r->command, err) < 0 ||
      sl_frame_get_str(f, SL_F_CWD, &r->cwd, err) < 0 ||
      get_i64(f, SL_F_STDIN_OPEN, 0, &r->stdin_open, err) < 0 ||
      get_i64(f, SL_F_TIMEOUT_MS, 0, &r->timeout_ms, err) < 0 ||
      get_i64(f, SL_F_STREAM, 0, &r->stream, err) < 0 ||
      get_i64(f, SL_F_BUFFER_SIZE, (int64_t)g_agent.buffer_size, &r->buffer_size, err) < 0)
    return -err->code;
  r->has_stdin = sl_frame_get_bytes(f, SL_F_STDIN, &r->stdin_data, &r->stdin_len);
  if ((argc == 0) == (r->command == NULL))
    return sl_error_set(err, EINVAL, "exec needs either argv or a command, not both");
  if (r->timeout_ms < 0)
    return sl_error_set(err, EINVAL, "invalid timeout: %lld ms", (long long)r->timeout_ms);
  if (r->buffer_size < AGENT_MIN_BUFFER || r->buffer_size > AGENT_MAX_BUFFER)
    return sl_error_set(err, EINVAL, "invalid buffer size: %lld (%u to %u bytes)",
                        (long long)r->buffer_size, AGENT_MIN_BUFFER, AGENT_MAX_BUFFER);
  if (r->command != NULL) {
    const char *sh[] = {"/bin/sh", "-c", r->command, NULL};
    sl_strv_free(r->argv);
    r->argv = calloc(4, sizeof(char *));
    if (r->argv == NULL) return sl_error_set(err, ENOMEM, "out of memory");
    for (int i = 0; i < 3; i++)
      if ((r->argv[i] = strdup(sh[i])) == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  }
  return 0;
}

static proc *proc_add(pid_t pid, int fds[3], exec_request *r) {
  proc *p = calloc(1, sizeof *p);
  if (p == NULL) return NULL;
  p->id = g_agent.next_proc_id++;
  p->pid = pid;
  p->argv = r->argv;
  r->argv = NULL;
  p->start_time_ms = wall_ms();
  p->running = 1;
  /* NOTE: deadlines use CLOCK_MONOTONIC. Without a time namespace a
   * restored process reads the host's clock, so time spent dumped counts
   * against a running timeout. */
  if (r->timeout_ms > 0) p->deadline_ms = now_ms() + r->timeout_ms;
  for (int i = 0; i < 3; i++) {
    p->fds[i] = fds[i];
    p->w[i] = (watch){.kind = W_PIPE, .obj = p, .fd_index = i};
    p->out[i].cap = (size_t)r->buffer_size;
  }
  p->fd_events[1] = p->fd_events[2] = EPOLLIN;
  watch_add(fds[1], EPOLLIN, &p->w[1]);
  watch_add(fds[2], EPOLLIN, &p->w[2]);
  p->next = g_agent.procs;
  g_agent.procs = p;
  g_agent.nprocs++;
  return p;
}

static void setup_stdin(proc *p, const exec_request *r) {
  if (r->has_stdin && stdin_queue(p, NULL, 0, r->stdin_data, r->stdin_len) < 0)
    SL_WARN("agent.exec", "proc=%lld error=out of memory queueing stdin", (long long)p->id);
  if (r->stdin_open) return;
  if (p->stdin_head == NULL) {
    close(p->fds[0]);
    p->fds[0] = -1;
  } else {
    p->stdin_close_pending = 1;
  }
}

static void reply_started(conn *c, uint32_t id, uint8_t type, const proc *p) {
  reply r = reply_begin(c, type, id);
  sl_buf *b = r.b;
  sl_frame_put_i64(b, SL_F_PROC, p->id);
  sl_frame_put_i64(b, SL_F_PID, p->pid);
  sl_frame_put_i64(b, SL_F_BUFFER_SIZE, (int64_t)p->out[1].cap);
  reply_end(&r);
}

static int start_process(exec_request *r, proc **out, sl_error *err) {
  if (g_agent.nprocs >= AGENT_MAX_PROCS)
    return sl_error_set(err, EAGAIN, "too many processes (%d); release exited ones",
                        AGENT_MAX_PROCS);
  char **envp = NULL, *path = NULL;
  int fds[3];
  pid_t pid;
  int rc = build_env(r->env, &envp, err);
  if (rc == 0) rc = resolve_program(r->argv[0], envp, &path, err);
  if (rc == 0) rc = spawn_process(path, r->argv, envp, r->cwd, &pid, fds, err);
  free(envp);
  free(path);
  if (rc < 0) return rc;
  *out = proc_add(pid, fds, r);
  if (*out == NULL) {
    kill(pid, SIGKILL);
    for (int i = 0; i < 3; i++) close(fds[i]);
    return sl_error_set(err, ENOMEM, "out of memory");
  }
  return 0;
}

static void handle_exec(conn *c, const sl_frame *f) {
  exec_request r;
  sl_error err = {0};
  proc *p = NULL;
  if (parse_exec(f, &r, &err) < 0 || start_process(&r, &p, &err) < 0) {
    reply_sl_error(c, f->id, &err);
    exec_request_free(&r);
    return;
  }
  SL_DEBUG("agent.exec", "conn=%lu proc=%lld pid=%d", c->serial, (long long)p->id, (int)p->pid);
  setup_stdin(p, &r);
  if (r.stream) {
    reply_started(c, f->id, SL_MSG_STARTED, p);
    p->att = c;
    p->att_id = f->id;
    pump_and_flush(p);
  } else {
    reply_started(c, f->id, SL_MSG_OK, p);
  }
  exec_request_free(&r);
}

/* Find the process named by the PROC field or reply ENOENT. */
static proc *request_proc(conn *c, const sl_frame *f) {
  int64_t id = 0;
  sl_error err = {0};
  int rc = sl_frame_get_i64(f, SL_F_PROC, &id, &err);
  if (rc < 0) {
    reply_sl_error(c, f->id, &err);
    return NULL;
  }
  if (rc == 0) {
    reply_error(c, f->id, EINVAL, "missing process id");
    return NULL;
  }
  proc *p = proc_find(id);
  if (p == NULL) reply_error(c, f->id, ENOENT, "no such process: %lld", (long long)id);
  return p;
}

static int check_offset(const proc *p, int i, int64_t offset, sl_error *err) {
  const ring *r = &p->out[i];
  if (offset < 0 || (uint64_t)offset > r->end)
    return sl_error_set(err, EINVAL, "offset %lld is past the output of process %lld (%llu)",
                        (long long)offset, (long long)p->id, (unsigned long long)r->end);
  if ((uint64_t)offset < r->start)
    return sl_error_set(err, ERANGE, "output of process %lld before offset %llu was released",
                        (long long)p->id, (unsigned long long)r->start);
  return 0;
}

static void handle_attach(conn *c, const sl_frame *f) {
  proc *p = request_proc(c, f);
  if (p == NULL) return;
  int64_t off[3] = {0, 0, 0};
  sl_error err = {0};
  if (get_i64(f, SL_F_STDOUT_OFFSET, 0, &off[1], &err) < 0 ||
      get_i64(f, SL_F_STDERR_OFFSET, 0, &off[2], &err) < 0 ||
      check_offset(p, 1, off[1], &err) < 0 || check_offset(p, 2, off[2], &err) < 0) {
    reply_sl_error(c, f->id, &err);
    return;
  }
  if (p->att != NULL) detach(p, ECANCELED, "attached by another request");
  for (int i = 1; i <= 2; i++) {
    output_release(p, i, (uint64_t)off[i], NULL);
    p->sent[i] = (uint64_t)off[i];
  }
  reply_started(c, f->id, SL_MSG_STARTED, p);
  p->att = c;
  p->att_id = f->id;
  pump_and_flush(p);
}

/* ACK has no reply; invalid offsets are ignored. */
static void handle_ack(conn *c, const sl_frame *f) {
  int64_t id = 0, off[3] = {0, -1, -1};
  if (sl_frame_get_i64(f, SL_F_PROC, &id, NULL) <= 0) return;
  proc *p = proc_find(id);
  if (p == NULL) return;
  sl_frame_get_i64(f, SL_F_STDOUT_OFFSET, &off[1], NULL);
  sl_frame_get_i64(f, SL_F_STDERR_OFFSET, &off[2], NULL);
  for (int i = 1; i <= 2; i++)
    if (off[i] >= 0 && check_offset(p, i, off[i], NULL) == 0)
      output_release(p, i, (uint64_t)off[i], NULL);
  (void)c;
}

static void handle_read(conn *c, const sl_frame *f) {
  proc *p = request_proc(c, f);
  if (p == NULL) return;
  int64_t fd, offset, length;
  sl_error err = {0};
  if (get_i64(f, SL_F_FD, 1, &fd, &err) < 0 || get_i64(f, SL_F_OFFSET, 0, &offset, &err) < 0 ||
      get_i64(f, SL_F_LENGTH, SL_PROTO_CHUNK, &length, &err) < 0) {
    reply_sl_error(c, f->id, &err);
    return;
  }
  if (fd != 1 && fd != 2) {
    reply_error(c, f->id, EINVAL, "invalid stream: %lld (1 stdout, 2 stderr)", (long long)fd);
    return;
  }
  if (check_offset(p, (int)fd, offset, &err) < 0) {
    reply_sl_error(c, f->id, &err);
    return;
  }
  output_release(p, (int)fd, (uint64_t)offset, NULL);
  ring *buf = &p->out[fd];
  size_t n = (size_t)(buf->end - buf->start);
  if (length >= 0 && (uint64_t)length < n) n = (size_t)length;
  if (n > SL_PROTO_CHUNK) n = SL_PROTO_CHUNK;
  reply r = reply_begin(c, SL_MSG_OK, f->id);
  sl_frame_put_i64(r.b, SL_F_PROC, p->id);
  sl_frame_put_i64(r.b, SL_F_FD, fd);
  sl_frame_put_i64(r.b, SL_F_OFFSET, offset);
  sl_frame_put_bytes(r.b, SL_F_DATA, buf->data, n);
  sl_frame_put_i64(r.b, SL_F_EOF, p->fds[fd] < 0 && buf->start + n == buf->end);
  sl_frame_put_str(r.b, SL_F_STATE, p->running ? "running" : "exited");
  reply_end(&r);
}

static void handle_write_stdin(conn *c, const sl_frame *f) {
  proc *p = request_proc(c, f);
  if (p == NULL) return;
  const uint8_t *data = NULL;
  size_t len = 0;
  sl_frame_get_bytes(f, SL_F_DATA, &data, &len);
  if (p->fds[0] < 0 || p->stdin_close_pending) {
    reply_error(c, f->id, EPIPE, "stdin of process %lld is closed", (long long)p->id);
    return;
  }
  if (stdin_queue(p, c, f->id, data, len) < 0) reply_error(c, f->id, ENOMEM, "out of memory");
}

static void handle_close_stdin(conn *c, const sl_frame *f) {
  proc *p = request_proc(c, f);
  if (p == NULL) return;
  if (p->fds[0] < 0) {
    reply_ok(c, f->id);
    return;
  }
  if (p->close_c != NULL) reply_ok(p->close_c, p->close_id);
  p->stdin_close_pending = 1;
  p->close_c = c;
  p->close_id = f->id;
  stdin_write_some(p);
}

static void handle_signal(conn *c, const sl_frame *f) {
  proc *p = request_proc(c, f);
  if (p == NULL) return;
  int64_t sig = 0;
  if (sl_frame_get_i64(f, SL_F_SIGNAL, &sig, NULL) <= 0) {
    reply_error(c, f->id, EINVAL, "missing signal number");
    return;
  }
  if (sig < 1 || sig > 64) {
    reply_error(c, f->id, EINVAL, "invalid signal number: %lld (expected 1 to 64)", (long long)sig);
    return;
  }
  if (!p->running) {
    reply_error(c, f->id, ESRCH, "process %lld has exited", (long long)p->id);
    return;
  }
  /* The process leads its own process group (setsid), so the signal
   * reaches its descendants too. */
  if (kill(-p->pid, (int)sig) < 0 && kill(p->pid, (int)sig) < 0) {
    reply_error(c, f->id, errno, "signal %lld to process %lld failed", (long long)sig,
                (long long)p->id);
    return;
  }
  reply_ok(c, f->id);
}

static void handle_wait(conn *c, const sl_frame *f) {
  proc *p = request_proc(c, f);
  if (p == NULL) return;
  int64_t timeout = 0;
  sl_frame_get_i64(f, SL_F_TIMEOUT_MS, &timeout, NULL);
  if (!p->running) {
    send_exit(c, f->id, p);
    return;
  }
  waiter *w = calloc(1, sizeof *w);
  if (w == NULL) {
    reply_error(c, f->id, ENOMEM, "out of memory");
    return;
  }
  *w = (waiter){.c = c, .id = f->id, .deadline_ms = timeout > 0 ? now_ms() + timeout : 0};
  w->next = p->waiters;
  p->waiters = w;
}

static void put_process(conn *c, uint32_t id, const proc *p) {
  reply r = reply_begin(c, SL_MSG_PROCESS, id);
  sl_buf *b = r.b;
  sl_frame_put_i64(b, SL_F_PROC, p->id);
  sl_frame_put_i64(b, SL_F_PID, p->pid);
  sl_frame_put_strv(b, SL_F_ARGV, (const char *const *)p->argv);
  sl_frame_put_str(b, SL_F_STATE, p->running ? "running" : "exited");
  sl_frame_put_i64(b, SL_F_START_TIME_MS, p->start_time_ms);
  if (!p->running) {
    if (WIFEXITED(p->status)) sl_frame_put_i64(b, SL_F_EXIT_CODE, WEXITSTATUS(p->status));
    if (WIFSIGNALED(p->status)) sl_frame_put_i64(b, SL_F_SIGNAL, WTERMSIG(p->status));
  }
  sl_frame_put_i64(b, SL_F_TIMED_OUT, p->timed_out);
  sl_frame_put_i64(b, SL_F_STDOUT_OFFSET, (int64_t)p->out[1].end);
  sl_frame_put_i64(b, SL_F_STDERR_OFFSET, (int64_t)p->out[2].end);
  sl_frame_put_i64(b, SL_F_STDOUT_START, (int64_t)p->out[1].start);
  sl_frame_put_i64(b, SL_F_STDERR_START, (int64_t)p->out[2].start);
  reply_end(&r);
}

static void handle_list(conn *c, const sl_frame *f) {
  int64_t count = 0;
  for (proc *p = g_agent.procs; p != NULL; p = p->next) {
    if (p->dead) continue;
    put_process(c, f->id, p);
    count++;
  }
  reply r = reply_begin(c, SL_MSG_OK, f->id);
  sl_frame_put_i64(r.b, SL_F_COUNT, count);
  reply_end(&r);
}

static void handle_release(conn *c, const sl_frame *f) {
  proc *p = request_proc(c, f);
  if (p == NULL) return;
  if (p->running) {
    reply_error(c, f->id, EBUSY, "process %lld is still running; signal it first",
                (long long)p->id);
    return;
  }
  detach(p, ECANCELED, "released");
  p->dead = 1;
  g_agent.nprocs--;
  reply_ok(c, f->id);
}

/* Stop streaming to the current attachment; the process keeps running and
 * its output stays buffered. */
static void handle_detach(conn *c, const sl_frame *f) {
  proc *p = request_proc(c, f);
  if (p == NULL) return;
  detach(p, ECANCELED, "detached");
  reply_ok(c, f->id);
}

void proc_handle(conn *c, const sl_frame *f) {
  switch (f->type) {
  case SL_MSG_EXEC: handle_exec(c, f); break;
  case SL_MSG_ATTACH: handle_attach(c, f); break;
  case SL_MSG_ACK: handle_ack(c, f); break;
  case SL_MSG_READ: handle_read(c, f); break;
  case SL_MSG_WRITE_STDIN: handle_write_stdin(c, f); break;
  case SL_MSG_CLOSE_STDIN: handle_close_stdin(c, f); break;
  case SL_MSG_SIGNAL: handle_signal(c, f); break;
  case SL_MSG_WAIT: handle_wait(c, f); break;
  case SL_MSG_LIST: handle_list(c, f); break;
  case SL_MSG_RELEASE: handle_release(c, f); break;
  case SL_MSG_DETACH: handle_detach(c, f); break;
  default: reply_error(c, f->id, ENOSYS, "unknown request type 0x%02x", f->type);
  }
}
