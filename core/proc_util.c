#include "proc_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

uint64_t sl_pid_start_time(pid_t pid) {
  char path[64], buf[1024];
  if (pid <= 0) return 0;
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  /* The command name (field 2) may contain spaces and parentheses; the
   * fields after it start after the last ')'. */
  char *p = strrchr(buf, ')');
  if (p == NULL) return 0;
  p += 2; /* field 3, the state */
  for (int field = 3; field < 22 && p; field++) {
    p = strchr(p, ' ');
    if (p) p++;
  }
  return p ? strtoull(p, NULL, 10) : 0;
}

int sl_pid_alive(pid_t pid, uint64_t start) {
  uint64_t now = sl_pid_start_time(pid);
  if (now == 0) return 0;
  /* A zombie still has its stat file; it no longer runs. */
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    char *p = n > 0 ? (buf[n] = '\0', strrchr(buf, ')')) : NULL;
    if (p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X')) return 0;
  }
  return start == 0 || now == start;
}

int sl_monitor_is(pid_t pid, const char *home, const char *id) {
  if (pid <= 0 || !sl_pid_alive(pid, 0)) return 0;
  char path[64], cmdline[8192];
  snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, cmdline, sizeof cmdline - 1);
  close(fd);
  if (n <= 0) return 0;
  cmdline[n] = '\0';
  const char *args[16] = {0};
  int argc = 0;
  for (char *p = cmdline; p < cmdline + n && argc < 16; p += strlen(p) + 1) args[argc++] = p;
  const char *slash = strrchr(args[0], '/');
  if (strcmp(slash ? slash + 1 : args[0], "sandlot-monitor") != 0) return 0;
  int home_ok = 0, id_ok = 0;
  for (int i = 1; i + 1 < argc; i++) {
    if (strcmp(args[i], "--home") == 0 && strcmp(args[i + 1], home) == 0) home_ok = 1;
    if (strcmp(args[i], "--id") == 0 && strcmp(args[i + 1], id) == 0) id_ok = 1;
  }
  return home_ok && id_ok;
}

pid_t sl_monitor_find(const char *home, const char *id) {
  DIR *d = opendir("/proc");
  if (d == NULL) return 0;
  pid_t found = 0;
  struct dirent *e;
  while (!found && (e = readdir(d)) != NULL) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end == '\0' && pid > 0 && sl_monitor_is((pid_t)pid, home, id)) found = (pid_t)pid;
  }
  closedir(d);
  return found;
}

static int executable(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

int sl_find_binary(const char *name, char *buf, size_t len, sl_error *err) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  char here[PATH_MAX] = "";
  if (n > 0) {
    self[n] = '\0';
    snprintf(here, sizeof here, "%s/%s", dirname(self), name);
    if (executable(here)) return snprintf(buf, len, "%s", here) < (int)len ? 0 : -ENAMETOOLONG;
  }
  const char *build = getenv("SANDLOT_BUILD_DIR");
  if (build && build[0]) {
    snprintf(buf, len, "%s/%s", build, name);
    if (executable(buf)) return 0;
  }
  return sl_error_set(err, ENOENT, "%s not found next to the running program (%s) or in "
                      "$SANDLOT_BUILD_DIR (%s); build it first", name, here[0] ? here : "?",
                      build ? build : "unset");
}

/* Fill `addr` for `path`; for a long path, open its directory into
 * *dir_fd and go through /proc/self/fd. */
static int socket_address(const char *path, struct sockaddr_un *addr, int *dir_fd, sl_error *err) {
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  *dir_fd = -1;
  if (strlen(path) < sizeof addr->sun_path) {
    memcpy(addr->sun_path, path, strlen(path) + 1);
    return 0;
  }
  char copy[PATH_MAX], copy2[PATH_MAX];
  snprintf(copy, sizeof copy, "%s", path);
  snprintf(copy2, sizeof copy2, "%s", path);
  *dir_fd = open(dirname(copy), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (*dir_fd < 0) return sl_error_errno(err, errno, "open the directory of %s", path);
  int n = snprintf(addr->sun_path, sizeof addr->sun_path, "/proc/self/fd/%d/%s", *dir_fd,
                   basename(copy2));
  if (n >= (int)sizeof addr->sun_path) {
    close(*dir_fd);
    return sl_error_set(err, ENAMETOOLONG, "socket name too long: %s", path);
  }
  return 0;
}

int sl_unix_connect(const char *path, sl_error *err) {
  struct sockaddr_un addr;
  int dir_fd;
  if (socket_address(path, &addr, &dir_fd, err) < 0) return -err->code;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int rc = fd < 0 ? -errno : connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 ? -errno : 0;
  if (dir_fd >= 0) close(dir_fd);
  if (rc < 0) {
    if (fd >= 0) close(fd);
    return sl_error_errno(err, -rc, "connect to %s", path);
  }
  return fd;
}

int sl_unix_listen(const char *path, sl_error *err) {
  struct sockaddr_un addr;
  int dir_fd;
  if (socket_address(path, &addr, &dir_fd, err) < 0) return -err->code;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  unlink(path);
  int rc = fd < 0 ? -errno : bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 ? -errno : 0;
  if (rc == 0 && chmod(path, 0600) < 0) rc = -errno;
  if (rc == 0 && listen(fd, 16) < 0) rc = -errno;
  if (dir_fd >= 0) close(dir_fd);
  if (rc < 0) {
    if (fd >= 0) close(fd);
    return sl_error_errno(err, -rc, "listen on %s", path);
  }
  return fd;
}

int64_t sl_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sl_monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
