#include "run.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* The last lines of output, kept for the error message. */
#define TAIL_LINES 6
#define TAIL_LINE_MAX 160

typedef struct output_tail {
  char lines[TAIL_LINES][TAIL_LINE_MAX];
  int next;
  int count;
} output_tail;

static void tail_push(output_tail *tail, const char *line) {
  /* Long lines are cut on purpose: the tail only ends error messages. */
  snprintf(tail->lines[tail->next], TAIL_LINE_MAX, "%.*s", TAIL_LINE_MAX - 1, line);
  tail->next = (tail->next + 1) % TAIL_LINES;
  if (tail->count < TAIL_LINES) tail->count++;
}

static void tail_format(const output_tail *tail, char *buf, size_t len) {
  buf[0] = '\0';
  size_t used = 0;
  int first = (tail->next - tail->count + TAIL_LINES) % TAIL_LINES;
  for (int i = 0; i < tail->count && used < len; i++) {
    int n = snprintf(buf + used, len - used, "%s%s", i ? " | " : "",
                     tail->lines[(first + i) % TAIL_LINES]);
    if (n < 0) break;
    used += (size_t)n;
  }
}

/* Read the pipe to its end, splitting it into lines. */
static void pump_lines(int fd, sl_line_fn on_line, void *data, output_tail *tail) {
  char buf[4096];
  size_t used = 0;
  for (;;) {
    ssize_t n = read(fd, buf + used, sizeof buf - 1 - used);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    used += (size_t)n;
    char *start = buf, *nl;
    while ((nl = memchr(start, '\n', used - (size_t)(start - buf))) != NULL) {
      *nl = '\0';
      tail_push(tail, start);
      if (on_line) on_line(start, data);
      start = nl + 1;
    }
    used -= (size_t)(start - buf);
    memmove(buf, start, used);
    if (used == sizeof buf - 1) { /* a line longer than the buffer */
      buf[used] = '\0';
      tail_push(tail, buf);
      if (on_line) on_line(buf, data);
      used = 0;
    }
  }
  if (used > 0) {
    buf[used] = '\0';
    tail_push(tail, buf);
    if (on_line) on_line(buf, data);
  }
}

static int spawn_with_pipe(char *const argv[], int out_fd, pid_t *pid) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, out_fd, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, sigpipe;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  /* The sandlot host ignores SIGPIPE; the child gets the default back. */
  sigemptyset(&sigpipe);
  sigaddset(&sigpipe, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &sigpipe);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  int rc = posix_spawnp(pid, argv[0], &actions, &attr, argv, environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  return rc;
}

int sl_run(char *const argv[], sl_line_fn on_line, void *data, sl_error *err) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) return sl_error_errno(err, errno, "pipe for %s", argv[0]);

  pid_t pid;
  int rc = spawn_with_pipe(argv, fds[1], &pid);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return sl_error_errno(err, rc, "failed to start %s", argv[0]);
  }

  output_tail tail = {0};
  pump_lines(fds[0], on_line, data, &tail);
  close(fds[0]);

  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return sl_error_errno(err, errno, "waitpid %s", argv[0]);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;

  char lines[600];
  tail_format(&tail, lines, sizeof lines);
  if (WIFSIGNALED(status))
    return sl_error_set(err, EIO, "%s killed by signal %d: %s", argv[0], WTERMSIG(status), lines);
  return sl_error_set(err, EIO, "%s failed with exit status %d: %s", argv[0],
                      WEXITSTATUS(status), lines);
}

/* nftw() has no user data pointer, so the first failure is kept here,
 * per thread, because removals may run on several threadpool threads. */
static __thread int remove_errno;
static __thread char remove_failed_path[PATH_MAX];

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  int rc = (type == FTW_DP || type == FTW_D) ? rmdir(path) : unlink(path);
  if (rc < 0 && errno != ENOENT && remove_errno == 0) {
    remove_errno = errno;
    snprintf(remove_failed_path, sizeof remove_failed_path, "%s", path);
  }
  return 0;
}

int sl_remove_tree(const char *path, sl_error *err) {
  struct stat st;
  if (lstat(path, &st) < 0) {
    if (errno == ENOENT) return 0;
    return sl_error_errno(err, errno, "stat %s", path);
  }
  remove_errno = 0;
  /* FTW_MOUNT keeps the walk on the file system of `path`, so a mount
   * point below it is not emptied; its rmdir then fails with EBUSY. */
  if (nftw(path, remove_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
    return sl_error_errno(err, errno, "remove %s", path);
  if (remove_errno != 0)
    return sl_error_errno(err, remove_errno, "remove %s", remove_failed_path);
  return 0;
}

int sl_path_format(char *buf, size_t len, sl_error *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, len, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n < len) return 0;
  return sl_error_set(err, ENAMETOOLONG, "path too long (%d bytes, at most %zu): %.200s...", n,
                      len - 1, buf);
}

int sl_mkdir_p(const char *path, unsigned mode, sl_error *err) {
  char buf[PATH_MAX];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
    return sl_error_set(err, ENAMETOOLONG, "path too long: %s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, mode) < 0 && errno != EEXIST) return sl_error_errno(err, errno, "mkdir %s", buf);
    *p = '/';
  }
  if (mkdir(buf, mode) < 0 && errno != EEXIST) return sl_error_errno(err, errno, "mkdir %s", buf);
  return 0;
}
