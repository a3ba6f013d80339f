/* The monitor's control socket: one request line per connection. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
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
  if (errno || end == arg || *end || seconds < 0 || seconds > 100LL * 365 * 24 * 3600)
    return sl_error_set(err, EINVAL, "invalid timeout: \"%s\" (expected whole seconds >= 0)", arg);
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

void sl_monitor_accept(sl_monitor *m) {
  int fd = accept4(m->listen_fd, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0) return;
  /* Clients send their line right after connecting; a silent one must
   * not stall the monitor. */
  struct timeval tv = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char line[256];
  size_t used = 0;
  while (used + 1 < sizeof line) {
    ssize_t n = read(fd, line + used, sizeof line - 1 - used);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    used += (size_t)n;
    if (memchr(line, '\n', used)) break;
  }
  line[used] = '\0';
  char *nl = strchr(line, '\n');
  if (nl == NULL) {
    close(fd);
    return;
  }
  *nl = '\0';
  if (!handle(m, fd, line)) close(fd);
}
