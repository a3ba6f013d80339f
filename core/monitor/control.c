/* The monitor's control socket: one request line per connection. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "monitor.h"
#include "proc_util.h"

static void reply(int fd, const char *line) {
  ssize_t ignored = send(fd, line, strlen(line), MSG_NOSIGNAL);
  (void)ignored;
}

static void reply_error(int fd, const sl_error *err) {
  char line[SL_ERROR_MSG_MAX + 64];
  snprintf(line, sizeof line, "err %s %s\n", sl_errname(err->code), err->msg);
  reply(fd, line);
}

static int set_timeout(sl_monitor *m, const char *arg, char *out, size_t len, sl_error *err) {
  char *end;
  errno = 0;
  long long seconds = strtoll(arg, &end, 10);
  if (errno || end == arg || *end || seconds < 0 || seconds > SL_TIMEOUT_MAX_SEC)
    return sl_error_set(err, EINVAL, "invalid timeout: \"%s\" (expected whole seconds from 0 to %lld)",
                        arg, SL_TIMEOUT_MAX_SEC);
  int64_t values[2] = {seconds * 1000, seconds > 0 ? sl_now_ms() + seconds * 1000 : 0};
  if (sl_sbstore_set_deadline(m->store, m->cfg.id, values[0], values[1], m->cfg.on_timeout, err) < 0)
    return -err->code;
  if (sl_monitor_set_deadline(m, values[1], err) < 0) return -err->code;
  snprintf(out, len, "ok deadline_ms=%" PRId64 "\n", values[1]);
  return 0;
}

static void status(sl_monitor *m, int fd) {
  sl_sandbox_info info;
  sl_error err = {0};
  if (sl_sbstore_get(m->store, m->cfg.id, &info, &err) < 0) {
    reply_error(fd, &err);
    return;
  }
  char line[256];
  snprintf(line, sizeof line, "ok state=%s init_pid=%d deadline_ms=%" PRId64 "\n",
           m->end_reason ? "dead" : sl_sandbox_state_name(info.state), (int)m->init_pid,
           m->deadline_ms);
  reply(fd, line);
}

/* Returns 1 when the connection stays open for a reply sent later. */
static int handle(sl_monitor *m, int fd, char *request) {
  sl_error err = {0};
  char out[128];
  SL_DEBUG("monitor.request", "sandbox=%s request=\"%s\"", m->cfg.id, request);
  if (strcmp(request, "kill") == 0) {
    if (m->nwaiters == SL_MONITOR_MAX_WAITERS) {
      sl_error_set(&err, EBUSY, "too many kill requests waiting");
      reply_error(fd, &err);
      return 0;
    }
    m->waiters[m->nwaiters++] = fd;
    sl_monitor_kill(m, "killed");
    return 1;
  }
  if (strcmp(request, "pause") == 0 || strcmp(request, "pause files") == 0) {
    /* The caller holds op.lock. After a success the loop ends. */
    if (sl_monitor_pause(m, request[5] != '\0', &err) < 0) reply_error(fd, &err);
    else reply(fd, "ok\n");
  } else if (strncmp(request, "rollback ", 9) == 0) {
    if (sl_id_validate(SL_ID_SNAPSHOT, request + 9, &err) < 0 ||
        sl_monitor_rollback(m, request + 9, &err) < 0)
      reply_error(fd, &err);
    else
      reply(fd, "ok\n");
  } else if (strcmp(request, "status") == 0) {
    status(m, fd);
  } else if (strncmp(request, "set_timeout ", 12) == 0) {
    if (set_timeout(m, request + 12, out, sizeof out, &err) < 0) reply_error(fd, &err);
    else reply(fd, out);
  } else {
    sl_error_set(&err, EINVAL, "unknown monitor request: \"%.100s\"", request);
    reply_error(fd, &err);
  }
  return 0;
}

/* How long a client may take to send its request line. */
#define CONN_TIMEOUT_MS 1000

static void drop_conn(sl_monitor *m, int i, int close_fd) {
  if (close_fd) close(m->conns[i].fd);
  m->conns[i] = m->conns[--m->nconns];
}

/* Read what connection `i` sent. A complete line is handled (the
 * connection leaves the table); returns 1 when it stays for more. */
static int read_conn(sl_monitor *m, int i) {
  sl_monitor_conn *c = &m->conns[i];
  for (;;) {
    ssize_t n = read(c->fd, c->line + c->used, sizeof c->line - 1 - c->used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
    if (n <= 0) break; /* EOF or an error before the line was complete */
    c->used += (size_t)n;
    c->line[c->used] = '\0';
    char *nl = strchr(c->line, '\n');
    if (nl != NULL) {
      *nl = '\0';
      int fd = c->fd;
      char line[sizeof c->line];
      memcpy(line, c->line, sizeof line);
      drop_conn(m, i, 0);
      if (!handle(m, fd, line)) close(fd);
      return 0;
    }
    if (c->used + 1 >= sizeof c->line) break; /* too long for any request */
  }
  drop_conn(m, i, 1);
  return 0;
}

void sl_monitor_accept(sl_monitor *m) {
  int fd = accept4(m->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) return;
  if (m->nconns == SL_MONITOR_MAX_CONNS) {
    sl_error err = {0};
    sl_error_set(&err, EBUSY, "too many monitor connections waiting for their request");
    reply_error(fd, &err);
    close(fd);
    return;
  }
  m->conns[m->nconns++] = (sl_monitor_conn){.fd = fd, .deadline_ms = sl_monotonic_ms() + CONN_TIMEOUT_MS};
  /* Clients send their line right after connecting: it is often there. */
  read_conn(m, m->nconns - 1);
}

int sl_monitor_control_poll(const sl_monitor *m, struct pollfd *fds) {
  for (int i = 0; i < m->nconns; i++) fds[i] = (struct pollfd){m->conns[i].fd, POLLIN, 0};
  return m->nconns;
}

void sl_monitor_control_ready(sl_monitor *m, const struct pollfd *fds, int count) {
  for (int k = 0; k < count; k++) {
    if (fds[k].revents == 0) continue;
    for (int i = 0; i < m->nconns; i++)
      if (m->conns[i].fd == fds[k].fd) {
        read_conn(m, i);
        break;
      }
  }
  int64_t now = sl_monotonic_ms();
  for (int i = m->nconns - 1; i >= 0; i--)
    if (m->conns[i].deadline_ms <= now) {
      SL_DEBUG("monitor.request_timeout", "sandbox=%s", m->cfg.id);
      drop_conn(m, i, 1);
    }
}

int sl_monitor_control_timeout(const sl_monitor *m) {
  if (m->nconns == 0) return -1;
  int64_t first = m->conns[0].deadline_ms;
  for (int i = 1; i < m->nconns; i++)
    if (m->conns[i].deadline_ms < first) first = m->conns[i].deadline_ms;
  int64_t wait = first - sl_monotonic_ms();
  return wait < 0 ? 0 : (int)wait;
}

void sl_monitor_control_close(sl_monitor *m) {
  while (m->nconns > 0) drop_conn(m, m->nconns - 1, 1);
}
