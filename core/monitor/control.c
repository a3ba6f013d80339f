/* The monitor's control socket: one request line per connection. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "log.h"
#include "monitor.h"
#include "proc_util.h"

static void reply(int fd, const char *line) { sl_monitor_reply(fd, line); }

static void reply_error(int fd, const sl_error *err) { sl_monitor_reply_error(fd, err); }

static int set_timeout(sl_monitor *m, const char *arg, char *out, size_t len, sl_error *err) {
  int64_t seconds = 0;
  if (sl_monitor_parse_timeout(arg, &seconds, err) < 0) return -err->code;
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

bool sl_monitor_handle_request(void *monitor, int fd, const char *request) {
  sl_monitor *m = monitor;
  sl_error err = {0};
  char out[128];
  SL_DEBUG("monitor.request", "sandbox=%s request=\"%s\"", m->cfg.id, request);
  if (strcmp(request, "kill") == 0) {
    if (m->nwaiters == SL_MONITOR_MAX_WAITERS) {
      sl_error_set(&err, EBUSY, "too many kill requests waiting");
      reply_error(fd, &err);
      return false;
    }
    m->waiters[m->nwaiters++] = fd;
    sl_monitor_kill(m, "killed");
    return true;
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
  return false;
}
