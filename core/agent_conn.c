/* The blocking agent client: one plain socket, one request at a time, each
 * call bounded by a timeout. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent_client.h"
#include "proc_util.h"

static int64_t monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until fd is ready for `events` or the deadline passes. */
static int wait_fd(int fd, short events, int64_t deadline, sl_error *err) {
  for (;;) {
    int64_t left = deadline - monotonic_ms();
    if (left <= 0) return sl_error_set(err, ETIMEDOUT, "agent did not answer in time");
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, (int)left);
    if (n > 0) return 0;
    if (n < 0 && errno != EINTR) return sl_error_errno(err, errno, "poll");
  }
}

static int send_all(sl_agent_conn *c, const uint8_t *bytes, size_t len, int64_t deadline,
                    sl_error *err) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = c->is_socket ? send(c->fd, bytes + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT)
                             : write(c->fd, bytes + done, len - done);
    if (n >= 0) {
      done += (size_t)n;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return sl_error_errno(err, errno, "sending to the agent failed");
    int rc = wait_fd(c->fd, POLLOUT, deadline, err);
    if (rc < 0) return rc;
  }
  return 0;
}

/* Read until the parser yields a frame. */
static int next_frame(sl_agent_conn *c, sl_frame *f, int64_t deadline, sl_error *err) {
  for (;;) {
    int rc = sl_parser_next(&c->in, f, err);
    if (rc != 0) return rc < 0 ? sl_error_wrap(err, "invalid data from the agent") : 0;
    rc = wait_fd(c->fd, POLLIN, deadline, err);
    if (rc < 0) return rc;
    uint8_t *space = sl_parser_space(&c->in, 65536);
    if (space == NULL) return sl_error_set(err, ENOMEM, "out of memory");
    ssize_t n = c->is_socket ? recv(c->fd, space, 65536, MSG_DONTWAIT) : read(c->fd, space, 65536);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return sl_error_errno(err, errno, "reading from the agent failed");
    if (n == 0) return sl_error_set(err, ECONNRESET, "connection to the agent closed");
    sl_parser_commit(&c->in, (size_t)n);
  }
}

static int connect_socket(const char *path, int *out, sl_error *err) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path)
    return sl_error_set(err, ENAMETOOLONG, "agent socket path too long: %s", path);
  strcpy(addr.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return sl_error_errno(err, errno, "socket");
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    int code = errno;
    close(fd);
    if (code == ENOENT) return sl_error_set(err, ENOENT, "agent socket not found: %s", path);
    if (code == ECONNREFUSED)
      return sl_error_set(err, ECONNREFUSED, "agent not listening: %s", path);
    if (code == EAGAIN) return sl_error_set(err, ETIMEDOUT, "agent backlog full: %s", path);
    return sl_error_errno(err, code, "connecting to the agent at %s failed", path);
  }
  *out = fd;
  return 0;
}

/* Send sync markers every SYNC_RESEND_MS until the agent returns ours. A
 * stale partial frame from an earlier session may swallow the first ones. */
#define SYNC_RESEND_MS 250

static int send_sync(sl_agent_conn *c, const uint8_t *nonce, int64_t deadline, sl_error *err) {
  sl_buf b = {0};
  sl_proto_put_sync(&b, nonce);
  int rc = b.failed ? sl_error_set(err, ENOMEM, "out of memory")
                    : send_all(c, b.data, b.len, deadline, err);
  sl_buf_free(&b);
  return rc;
}

static int sync_stream(sl_agent_conn *c, int64_t deadline, sl_error *err) {
  uint8_t nonce[SL_PROTO_SYNC_NONCE];
  if (getrandom(nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce)
    return sl_error_errno(err, errno, "getrandom");
  sl_parser_reset(&c->in);
  sl_parser_resync(&c->in);
  int rc = 0;
  while (rc == 0) {
    int64_t attempt_end = monotonic_ms() + SYNC_RESEND_MS;
    if (attempt_end > deadline) attempt_end = deadline;
    rc = send_sync(c, nonce, deadline, err);
    sl_frame f;
    while (rc == 0) {
      rc = next_frame(c, &f, attempt_end, err);
      if (rc == 0 && f.type == SL_MSG_SYNC && memcmp(f.body, nonce, sizeof nonce) == 0)
        return 0;
      if (rc == 0) sl_parser_resync(&c->in); /* an older session's bytes */
    }
    if (rc == -ETIMEDOUT && monotonic_ms() < deadline) rc = 0;
  }
  return sl_error_wrap(err, "sync with the agent");
}

int sl_agent_conn_attach_fd(sl_agent_conn *c, int fd, int timeout_ms, int sync, sl_error *err) {
  memset(c, 0, sizeof *c);
  c->fd = fd;
  struct stat st;
  c->is_socket = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
  c->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
  c->next_id = 1;
  sl_parser_init(&c->in, SL_PROTO_MAX_FRAME);
  int rc = sync ? sync_stream(c, monotonic_ms() + c->timeout_ms, err) : 0;
  if (rc < 0) {
    sl_parser_free(&c->in);
    c->fd = -1;
  }
  return rc;
}

int sl_agent_conn_open(sl_agent_conn *c, const char *path, int timeout_ms, int sync,
                       sl_error *err) {
  memset(c, 0, sizeof *c);
  c->fd = -1;
  int fd = -1;
  int rc = connect_socket(path, &fd, err);
  if (rc == 0) rc = sl_agent_conn_attach_fd(c, fd, timeout_ms, sync, err);
  if (rc < 0 && fd >= 0) close(fd);
  if (rc < 0) c->fd = -1;
  return rc;
}

void sl_agent_conn_close(sl_agent_conn *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  sl_parser_free(&c->in);
}

/* Release streamed output up to the end of an OUTPUT event. */
static int ack_output(sl_agent_conn *c, const sl_frame *f, int64_t deadline, sl_error *err) {
  int64_t proc = 0, fd = 0, offset = 0;
  const uint8_t *data;
  size_t len = 0;
  sl_frame_get_i64(f, SL_F_PROC, &proc, NULL);
  sl_frame_get_i64(f, SL_F_FD, &fd, NULL);
  sl_frame_get_i64(f, SL_F_OFFSET, &offset, NULL);
  sl_frame_get_bytes(f, SL_F_DATA, &data, &len);
  if (fd != 1 && fd != 2) return 0;
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_ACK, 0);
  sl_frame_put_i64(&b, SL_F_PROC, proc);
  sl_frame_put_i64(&b, fd == 1 ? SL_F_STDOUT_OFFSET : SL_F_STDERR_OFFSET, offset + (int64_t)len);
  int rc = sl_frame_end(&b, start, err);
  if (rc == 0) rc = send_all(c, b.data, b.len, deadline, err);
  sl_buf_free(&b);
  return rc;
}

int sl_agent_conn_call(sl_agent_conn *c, const sl_buf *request,
                       void (*on_event)(const sl_frame *f, void *data), void *data,
                       sl_buf *reply, sl_frame *final, sl_error *err) {
  if (c->fd < 0) return sl_error_set(err, ENOTCONN, "agent connection is closed");
  if (request->len < SL_PROTO_HEADER) return sl_error_set(err, EINVAL, "request frame is empty");
  int64_t deadline = monotonic_ms() + c->timeout_ms;
  uint32_t id = c->next_id++;
  sl_frame_set_id(request->data, id);
  int rc = send_all(c, request->data, request->len, deadline, err);
  sl_frame f;
  while (rc == 0) {
    rc = next_frame(c, &f, deadline, err);
    if (rc < 0 || f.id != id) continue;
    if (!sl_msg_is_final(f.type)) {
      if (on_event != NULL) on_event(&f, data);
      if (f.type == SL_MSG_OUTPUT) rc = ack_output(c, &f, deadline, err);
      continue;
    }
    if (f.type == SL_MSG_ERROR) {
      sl_agent_error_from_frame(&f, err);
      return -err->code;
    }
    /* Keep the reply: the parser's buffer is reused by the next call. */
    size_t size = SL_PROTO_HEADER + f.body_len;
    reply->len = 0;
    sl_buf_append(reply, f.body - SL_PROTO_HEADER, size);
    if (reply->failed) return sl_error_set(err, ENOMEM, "out of memory");
    long n = sl_frame_parse(reply->data, reply->len, SL_PROTO_MAX_FRAME, final, err);
    return n > 0 ? 0 : sl_error_set(err, EPROTO, "reply could not be parsed again");
  }
  return rc;
}

/* Send a request that has only these fields and expect OK. */
static int simple_call(sl_agent_conn *c, sl_buf *b, size_t start, sl_buf *reply, sl_frame *f,
                       sl_error *err) {
  int rc = sl_frame_end(b, start, err);
  if (rc == 0) rc = sl_agent_conn_call(c, b, NULL, NULL, reply, f, err);
  b->len = 0;
  return rc;
}

int sl_agent_quiesce(const char *path, int timeout_ms, sl_error *err) {
  return sl_agent_quiesce_hold(path, timeout_ms, 0, err);
}

int sl_agent_quiesce_hold(const char *path, int timeout_ms, int hold_ms, sl_error *err) {
  sl_agent_conn c;
  int rc = sl_agent_conn_open(&c, path, timeout_ms, 0, err);
  if (rc < 0) return sl_error_wrap(err, "quiesce");
  sl_buf b = {0}, reply = {0};
  sl_frame f;
  size_t start = sl_frame_begin(&b, SL_MSG_QUIESCE, 0);
  if (hold_ms > 0) sl_frame_put_i64(&b, SL_F_TIMEOUT_MS, hold_ms);
  rc = simple_call(&c, &b, start, &reply, &f, err);
  /* The agent closes the connection after its reply; wait for that. */
  int64_t deadline = monotonic_ms() + c.timeout_ms;
  while (rc == 0) {
    rc = next_frame(&c, &f, deadline, err);
    if (rc == -ECONNRESET) {
      rc = 0;
      break;
    }
    if (rc == 0) continue;
  }
  sl_buf_free(&b);
  sl_buf_free(&reply);
  sl_agent_conn_close(&c);
  return rc < 0 ? sl_error_wrap(err, "quiesce") : 0;
}

int sl_agent_end_quiesce(pid_t agent_pid, uint64_t start_time, sl_error *err) {
  int pidfd = (int)syscall(SYS_pidfd_open, agent_pid, 0);
  if (pidfd < 0 && errno == ESRCH) return 0;
  if (pidfd < 0) return sl_error_errno(err, errno, "pidfd_open of agent pid %d", (int)agent_pid);
  /* The pidfd keeps naming this process, so a pid reused after the check
   * never gets the signal. */
  int rc = 0;
  if (start_time == 0 || sl_pid_start_time(agent_pid) == start_time) {
    if (syscall(SYS_pidfd_send_signal, pidfd, SL_QUIESCE_END_SIGNAL, NULL, 0) < 0 && errno != ESRCH)
      rc = sl_error_errno(err, errno, "signal to agent pid %d", (int)agent_pid);
  }
  close(pidfd);
  return rc;
}

static int run_on_fork(sl_agent_conn *c, const char *command, int64_t timeout_ms,
                       int *exit_code, sl_error *err) {
  sl_buf b = {0}, reply = {0};
  sl_frame f;
  size_t start = sl_frame_begin(&b, SL_MSG_EXEC, 0);
  sl_frame_put_str(&b, SL_F_COMMAND, command);
  if (timeout_ms > 0) sl_frame_put_i64(&b, SL_F_TIMEOUT_MS, timeout_ms);
  int rc = simple_call(c, &b, start, &reply, &f, err);
  int64_t proc = 0;
  if (rc == 0) sl_frame_get_i64(&f, SL_F_PROC, &proc, NULL);
  if (rc == 0) {
    start = sl_frame_begin(&b, SL_MSG_WAIT, 0);
    sl_frame_put_i64(&b, SL_F_PROC, proc);
    int saved = c->timeout_ms;
    /* The agent enforces the command's timeout; allow a little more here. */
    if (timeout_ms > 0) c->timeout_ms = (int)timeout_ms + saved;
    rc = simple_call(c, &b, start, &reply, &f, err);
    c->timeout_ms = saved;
  }
  int64_t code = -1, sig = 0;
  if (rc == 0 && sl_frame_get_i64(&f, SL_F_EXIT_CODE, &code, NULL) != 1) {
    sl_frame_get_i64(&f, SL_F_SIGNAL, &sig, NULL);
    rc = sl_error_set(err, ECHILD, "on_fork command killed by signal %lld: %s", (long long)sig,
                      command);
  }
  if (proc > 0) {
    start = sl_frame_begin(&b, SL_MSG_RELEASE, 0);
    sl_frame_put_i64(&b, SL_F_PROC, proc);
    sl_error ignored;
    simple_call(c, &b, start, &reply, &f, &ignored);
  }
  if (rc == 0) *exit_code = (int)code;
  sl_buf_free(&b);
  sl_buf_free(&reply);
  return rc;
}

int sl_agent_post_restore(sl_agent_conn *c, const char *hostname, const void *entropy,
                          size_t entropy_len, const char *on_fork, int64_t timeout_ms,
                          int *exit_code, sl_error *err) {
  sl_buf b = {0}, reply = {0};
  sl_frame f;
  int rc = 0;
  *exit_code = 0;
  if (hostname != NULL) {
    size_t start = sl_frame_begin(&b, SL_MSG_SET_HOSTNAME, 0);
    sl_frame_put_str(&b, SL_F_NAME, hostname);
    rc = simple_call(c, &b, start, &reply, &f, err);
  }
  if (rc == 0 && entropy_len > 0) {
    size_t start = sl_frame_begin(&b, SL_MSG_ADD_ENTROPY, 0);
    sl_frame_put_bytes(&b, SL_F_DATA, entropy, entropy_len);
    rc = simple_call(c, &b, start, &reply, &f, err);
  }
  sl_buf_free(&b);
  sl_buf_free(&reply);
  if (rc == 0 && on_fork != NULL) rc = run_on_fork(c, on_fork, timeout_ms, exit_code, err);
  return rc < 0 ? sl_error_wrap(err, "post-restore hooks") : 0;
}
