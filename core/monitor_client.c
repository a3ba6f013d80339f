#include "monitor_client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proc_util.h"

int sl_monitor_parse_reply(const char *line, char *reply, size_t len, sl_error *err) {
  if (strncmp(line, "ok", 2) == 0 && (line[2] == '\0' || line[2] == ' ')) {
    if (reply && len) snprintf(reply, len, "%s", line[2] ? line + 3 : "");
    return 0;
  }
  if (strncmp(line, "err ", 4) == 0) {
    char name[32] = "";
    const char *msg = line + 4, *space = strchr(msg, ' ');
    size_t n = space ? (size_t)(space - msg) : strlen(msg);
    if (n < sizeof name) {
      memcpy(name, msg, n);
      name[n] = '\0';
    }
    int code = sl_errcode(name);
    return sl_error_set(err, code ? code : EIO, "%s", space ? space + 1 : "monitor failed");
  }
  return sl_error_set(err, EPROTO, "invalid monitor response: %.200s", line);
}

static int send_all(int fd, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Read up to the first newline or EOF within the deadline. */
static int read_line(int fd, char *buf, size_t len, int64_t deadline) {
  size_t used = 0;
  while (used + 1 < len) {
    int64_t left = deadline - sl_monotonic_ms();
    if (left <= 0) return -ETIMEDOUT;
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, (int)left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return r < 0 ? -errno : -ETIMEDOUT;
    ssize_t n = read(fd, buf + used, len - 1 - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) break;
    used += (size_t)n;
    if (memchr(buf, '\n', used)) break;
  }
  buf[used] = '\0';
  char *nl = strchr(buf, '\n');
  if (nl) *nl = '\0';
  return used == 0 ? -ECONNRESET : 0;
}

int sl_monitor_request(const char *socket_path, const char *request, int timeout_ms,
                       char *reply, size_t len, sl_error *err) {
  int fd = sl_unix_connect(socket_path, err);
  if (fd < 0) return fd;
  char line[1024];
  snprintf(line, sizeof line, "%s\n", request);
  int rc = send_all(fd, line, strlen(line));
  if (rc == 0) rc = read_line(fd, line, sizeof line, sl_monotonic_ms() + timeout_ms);
  close(fd);
  if (rc == -ETIMEDOUT)
    return sl_error_set(err, ETIMEDOUT, "monitor did not answer \"%s\" within %d ms", request,
                        timeout_ms);
  if (rc < 0) return sl_error_errno(err, -rc, "monitor request \"%s\"", request);
  return sl_monitor_parse_reply(line, reply, len, err);
}
