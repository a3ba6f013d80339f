#include "monitor_client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proc_util.h"

extern char **environ;

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

#define START_ARGS_MAX 24

/* Fill `argv` for the monitor; false when `extra` has too many entries. */
static bool monitor_argv(const char *monitor, const char *home, const char *id,
                         const char *const *extra, int auto_kill, const char **argv) {
  const char *fixed[] = {monitor, "--home", home, "--id", id, "--ready-fd", "3"};
  size_t n = 0;
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) argv[n++] = fixed[i];
  if (auto_kill) {
    argv[n++] = "--creator-pidfd";
    argv[n++] = "4";
  }
  for (; extra != NULL && *extra != NULL; extra++) {
    if (n + 1 >= START_ARGS_MAX) return false;
    argv[n++] = *extra;
  }
  argv[n] = NULL;
  return true;
}

/* In the grandchild: the ready pipe as fd 3, the creator's pidfd as fd 4,
 * nothing else open but /dev/null on 0 to 2, the default signal mask. */
static void exec_monitor(const char *const *argv, int ready, int pidfd) {
  int ready_fd = fcntl(ready, F_DUPFD, 10);
  int creator_fd = pidfd >= 0 ? fcntl(pidfd, F_DUPFD, 10) : -1;
  dup2(ready_fd, 3);
  if (creator_fd >= 0) dup2(creator_fd, 4);
  syscall(SYS_close_range, creator_fd >= 0 ? 5U : 4U, ~0U, 0U);
  int null = open("/dev/null", O_RDWR);
  for (int fd = 0; fd < 3; fd++) dup2(null, fd);
  if (null > 2) close(null);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  execve(argv[0], (char *const *)argv, environ);
  _exit(127);
}

/* Start the monitor detached: the intermediate child calls setsid() and
 * forks again, so the monitor is no child of the caller and outlives it.
 * Between fork and exec only async-signal-safe calls are made, because the
 * caller may be multithreaded. Returns the read end of the ready pipe. */
static int spawn_detached(const char *const *argv, int auto_kill, sl_error *err) {
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) < 0) return sl_error_errno(err, errno, "pipe");
  int pidfd = auto_kill ? (int)syscall(SYS_pidfd_open, getpid(), 0) : -1;
  if (auto_kill && pidfd < 0) {
    close(ready[0]);
    close(ready[1]);
    return sl_error_errno(err, errno, "pidfd_open of the creating process");
  }
  pid_t child = fork();
  if (child == 0) {
    setsid();
    pid_t grandchild = fork();
    if (grandchild != 0) _exit(grandchild < 0 ? 1 : 0);
    exec_monitor(argv, ready[1], pidfd);
  }
  int saved = errno;
  close(ready[1]);
  if (pidfd >= 0) close(pidfd);
  if (child < 0) {
    close(ready[0]);
    return sl_error_errno(err, saved, "fork the monitor");
  }
  while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {
  }
  return ready[0];
}

/* Read the monitor's one-line ready message. */
static int await_ready(int fd, int timeout_ms, sl_error *err) {
  char buf[SL_ERROR_MSG_MAX + 64];
  size_t used = 0;
  int64_t deadline = sl_monotonic_ms() + timeout_ms;
  while (used + 1 < sizeof buf) {
    int64_t left = deadline - sl_monotonic_ms();
    struct pollfd p = {fd, POLLIN, 0};
    int r = left > 0 ? poll(&p, 1, (int)left) : 0;
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) return sl_error_set(err, ETIMEDOUT, "monitor not ready after %d ms", timeout_ms);
    ssize_t n = read(fd, buf + used, sizeof buf - 1 - used);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    used += (size_t)n;
  }
  buf[used] = '\0';
  char *nl = strchr(buf, '\n');
  if (nl) *nl = '\0';
  if (used == 0) return sl_error_set(err, EIO, "monitor exited before the sandbox was ready");
  return sl_monitor_parse_reply(buf, NULL, 0, err);
}

int sl_monitor_start(const char *home, const char *id, const char *const *extra, int auto_kill,
                     int ready_timeout_ms, sl_error *err) {
  char monitor[PATH_MAX];
  const char *argv[START_ARGS_MAX];
  if (sl_find_binary("sandlot-monitor", monitor, sizeof monitor, err) < 0) return -err->code;
  if (!monitor_argv(monitor, home, id, extra, auto_kill, argv))
    return sl_error_set(err, EINVAL, "too many monitor arguments");
  int ready = spawn_detached(argv, auto_kill, err);
  if (ready < 0) return ready;
  int rc = await_ready(ready, ready_timeout_ms, err);
  close(ready);
  return rc;
}
