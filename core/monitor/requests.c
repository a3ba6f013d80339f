/* The control socket's connections, read without blocking (common.h). */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "log.h"
#include "proc_util.h"

/* How long a client may take to send its request line. */
#define CONN_TIMEOUT_MS 1000

static void drop_conn(sl_monitor_requests *r, int i, bool close_fd) {
  if (close_fd) close(r->conns[i].fd);
  r->conns[i] = r->conns[--r->count];
}

/* Read what connection `i` sent. A complete line is handed to the
 * handler and the connection leaves the table. */
static void read_conn(sl_monitor_requests *r, int i) {
  sl_monitor_conn *c = &r->conns[i];
  for (;;) {
    ssize_t n = read(c->fd, c->line + c->used, sizeof c->line - 1 - c->used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) break; /* EOF or an error before the line was complete */
    c->used += (size_t)n;
    c->line[c->used] = '\0';
    char *nl = strchr(c->line, '\n');
    if (nl != NULL) {
      *nl = '\0';
      int fd = c->fd;
      char line[sizeof c->line];
      memcpy(line, c->line, sizeof line);
      drop_conn(r, i, false);
      if (!r->handle(r->data, fd, line)) close(fd);
      return;
    }
    if (c->used + 1 >= sizeof c->line) break; /* too long for any request */
  }
  drop_conn(r, i, true);
}

void sl_monitor_requests_accept(sl_monitor_requests *r, int listen_fd) {
  int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) return;
  if (r->count == SL_MONITOR_MAX_CONNS) {
    sl_error err = {0};
    sl_error_set(&err, EBUSY, "too many monitor connections waiting for their request");
    sl_monitor_reply_error(fd, &err);
    close(fd);
    return;
  }
  r->conns[r->count++] = (sl_monitor_conn){.fd = fd, .deadline_ms = sl_monotonic_ms() + CONN_TIMEOUT_MS};
  /* Clients send their line right after connecting: it is often there. */
  read_conn(r, r->count - 1);
}

int sl_monitor_requests_poll(const sl_monitor_requests *r, struct pollfd *fds) {
  for (int i = 0; i < r->count; i++) fds[i] = (struct pollfd){r->conns[i].fd, POLLIN, 0};
  return r->count;
}

void sl_monitor_requests_ready(sl_monitor_requests *r, const struct pollfd *fds, int count) {
  for (int k = 0; k < count; k++) {
    if (fds[k].revents == 0) continue;
    for (int i = 0; i < r->count; i++)
      if (r->conns[i].fd == fds[k].fd) {
        read_conn(r, i);
        break;
      }
  }
  int64_t now = sl_monotonic_ms();
  for (int i = r->count - 1; i >= 0; i--)
    if (r->conns[i].deadline_ms <= now) {
      SL_DEBUG("monitor.request_timeout", "sandbox=%s", r->id);
      drop_conn(r, i, true);
    }
}

int sl_monitor_requests_timeout(const sl_monitor_requests *r) {
  if (r->count == 0) return -1;
  int64_t first = r->conns[0].deadline_ms;
  for (int i = 1; i < r->count; i++)
    if (r->conns[i].deadline_ms < first) first = r->conns[i].deadline_ms;
  int64_t wait = first - sl_monotonic_ms();
  return wait < 0 ? 0 : (int)wait;
}

void sl_monitor_requests_close(sl_monitor_requests *r) {
  while (r->count > 0) drop_conn(r, r->count - 1, true);
}
