/* CRIU execution: spawn by absolute path, wait with a timeout, report the
 * error lines of the operation's log. Privileged; integration-tested. */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "criu.h"
#include "log.h"

extern char **environ;

#define OUTPUT_NAME "criu.out"
#define LOG_TAIL_MAX (256 * 1024)

/* Lines CRIU 4.2.1 logs as errors on successful runs on this kind of host:
 * it cannot raise RLIMIT_NOFILE inside some containers, and it probes for
 * iptables tools that are not installed. */
static const char *const benign_errors[] = {
    "Can't setup RLIMIT_NOFILE",
    "iptables-save -V failed",
    "iptables-legacy-save -V failed",
    "iptables-restore -V failed",
    "iptables-legacy-restore -V failed",
    "execvp(\"iptables",
    "execvp(\"ip6tables",
    "Address already assigned",
    "address already assigned",
};

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static bool is_benign(const char *line, size_t len) {
  for (size_t i = 0; i < sizeof benign_errors / sizeof *benign_errors; i++) {
    const char *needle = benign_errors[i];
    size_t n = strlen(needle);
    for (size_t j = 0; j + n <= len; j++)
      if (memcmp(line + j, needle, n) == 0) return true;
  }
  return false;
}

static bool is_error_line(const char *line, size_t len) {
  for (size_t j = 0; j + 5 <= len; j++)
    if (memcmp(line + j, "Error", 5) == 0) return !is_benign(line, len);
  return false;
}

/* Skip CRIU's "(00.012345) " timestamp and a "     1: " task prefix. */
static const char *strip_prefix(const char *line, const char *end) {
  const char *p = line;
  if (p < end && *p == '(') {
    const char *close = memchr(p, ')', (size_t)(end - p));
    if (close != NULL) p = close + 1;
  }
  while (p < end && *p == ' ') p++;
  const char *q = p;
  while (q < end && *q >= '0' && *q <= '9') q++;
  if (q > p && q + 1 < end && q[0] == ':' && q[1] == ' ') p = q + 2;
  return p;
}

typedef struct {
  const char *start;
  size_t len;
} line_span;

int sl_criu_error_lines(const char *log_text, char *buf, size_t size) {
  if (size == 0) return 0;
  buf[0] = '\0';
  if (log_text == NULL) return 0;
  enum { MAX_LINES = 64 };
  line_span lines[MAX_LINES];
  size_t count = 0;
  for (const char *p = log_text; *p;) {
    const char *nl = strchr(p, '\n');
    const char *end = nl ? nl : p + strlen(p);
    if (is_error_line(p, (size_t)(end - p))) {
      const char *s = strip_prefix(p, end);
      if (count == MAX_LINES) memmove(lines, lines + 1, sizeof lines[0] * (MAX_LINES - 1));
      lines[count < MAX_LINES ? count++ : MAX_LINES - 1] = (line_span){s, (size_t)(end - s)};
    }
    p = nl ? nl + 1 : end;
  }

  /* Keep the last lines that fit: CRIU's final lines name the failure. */
  size_t first = count, total = 0;
  while (first > 0 && total + lines[first - 1].len + 2 < size) {
    total += lines[first - 1].len + 2;
    first--;
  }
  size_t used = 0;
  for (size_t i = first; i < count; i++) {
    if (used > 0) {
      memcpy(buf + used, "; ", 2);
      used += 2;
    }
    memcpy(buf + used, lines[i].start, lines[i].len);
    used += lines[i].len;
  }
  buf[used] = '\0';
  return (int)(count - first);
}

/* Read at most the last LOG_TAIL_MAX bytes of a file as a string; NULL
 * when it cannot be read. */
static char *read_tail(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  struct stat st;
  off_t start = 0;
  if (fstat(fd, &st) == 0 && st.st_size > LOG_TAIL_MAX) start = st.st_size - LOG_TAIL_MAX;
  char *text = malloc(LOG_TAIL_MAX + 1);
  ssize_t n = text ? pread(fd, text, LOG_TAIL_MAX, start) : -1;
  close(fd);
  if (n < 0) {
    free(text);
    return NULL;
  }
  text[n] = '\0';
  return text;
}

/* Fill `err` with CRIU's failure and the error lines of its log, falling
 * back to its stdout and stderr when the log has none (a bad option, an
 * action script that failed before logging). */
static int report_failure(const sl_criu_opts *opts, const sl_criu_result *res,
                          const char *output_path, sl_error *err) {
  char lines[SL_ERROR_MSG_MAX - 128];
  lines[0] = '\0';
  char *text = res->log_path[0] ? read_tail(res->log_path) : NULL;
  sl_criu_error_lines(text, lines, sizeof lines);
  free(text);
  if (lines[0] == '\0' && output_path != NULL) {
    text = read_tail(output_path);
    sl_criu_error_lines(text, lines, sizeof lines);
    if (lines[0] == '\0' && text != NULL) {
      char *nl = strrchr(text, '\n');
      while (nl != NULL && nl[1] == '\0' && nl > text) {
        *nl = '\0';
        nl = strrchr(text, '\n');
      }
      snprintf(lines, sizeof lines, "%s", nl ? nl + 1 : text);
    }
    free(text);
  }
  static const char *const names[] = {"check", "dump", "restore", "lazy-pages"};
  const char *name = (unsigned)opts->command <= SL_CRIU_LAZY_PAGES ? names[opts->command] : "?";
  if (lines[0] == '\0')
    return sl_error_set(err, EIO, "criu %s failed: exit status %d (log: %s)", name,
                        res->exit_status, res->log_path[0] ? res->log_path : "none");
  return sl_error_set(err, EIO, "criu %s failed: exit status %d: %s", name, res->exit_status,
                      lines);
}

/* Build environ plus the caller's entries. The array is freed by the
 * caller; the strings belong to environ and to `exec`. */
static char **build_env(const sl_criu_exec *exec) {
  size_t n = 0;
  while (environ[n] != NULL) n++;
  size_t extra = exec ? exec->env_count : 0;
  char **env = calloc(n + extra + 1, sizeof *env);
  if (env == NULL) return NULL;
  memcpy(env, environ, n * sizeof *env);
  for (size_t i = 0; i < extra; i++) env[n + i] = (char *)exec->env[i];
  return env;
}

/* In the child: enter a new network namespace, set loopback up and keep a
 * descriptor of the namespace as `target_fd`. Returns 0 or an errno. */
static int enter_new_net_ns(int target_fd) {
  if (unshare(CLONE_NEWNET) < 0) return errno;
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return errno;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, "lo", 3);
  if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0) return errno;
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0) return errno;
  close(sock);
  int ns = open("/proc/self/ns/net", O_RDONLY);
  if (ns < 0) return errno;
  if (ns != target_fd && (dup2(ns, target_fd) < 0 || close(ns) < 0)) return errno;
  return 0;
}

/* In the child after fork: only async-signal-safe calls. On failure write
 * the errno and the index of the failing step to `status_fd`. */
static void exec_child(char *const *argv, char **env, const sl_criu_exec *exec, int output_fd,
                       int status_fd) {
  int step = -1;
  setpgid(0, 0);
  /* A caller such as the monitor blocks signals for its signalfd and
   * ignores SIGPIPE. CRIU waits for its helpers through SIGCHLD, so it
   * starts with the default signal state. */
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigaction(SIGPIPE, &dfl, NULL);
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(output_fd, 1) < 0 || dup2(output_fd, 2) < 0)
    goto fail;
  for (size_t i = 0; exec != NULL && i < exec->join_cgroup_count; i++) {
    step = (int)i;
    int fd = open(exec->join_cgroups[i], O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0", 1) != 1) goto fail;
    close(fd);
  }
  step = -3;
  if (exec != NULL && exec->net_ns_fd > 0 && status_fd == exec->net_ns_fd)
    status_fd = fcntl(status_fd, F_DUPFD_CLOEXEC, exec->net_ns_fd + 1);
  if (exec != NULL && exec->net_ns_fd > 0) {
    int code = enter_new_net_ns(exec->net_ns_fd);
    if (code != 0) {
      errno = code;
      goto fail;
    }
  }
  step = -2;
  execve(argv[0], argv, env);
fail:;
  int report[2] = {errno, step};
  ssize_t ignored = write(status_fd, report, sizeof report);
  (void)ignored;
  _exit(127);
}

static int open_output(const sl_criu_opts *opts, char *path, size_t size, sl_error *err) {
  if (opts->command == SL_CRIU_CHECK) {
    snprintf(path, size, "%s", "");
    int fd = memfd_create("criu-check-output", MFD_CLOEXEC);
    return fd >= 0 ? fd : sl_error_errno(err, errno, "cannot create a buffer for criu check");
  }
  if (mkdir(opts->work_dir, 0700) < 0 && errno != EEXIST)
    return sl_error_errno(err, errno, "cannot create CRIU work directory %s", opts->work_dir);
  snprintf(path, size, "%s/%s", opts->work_dir, OUTPUT_NAME);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  return fd >= 0 ? fd : sl_error_errno(err, errno, "cannot create %s", path);
}

/* Wait for `pid` at most `timeout_ms` (<= 0: forever). Returns its wait
 * status, or -ETIMEDOUT after killing its process group. */
static int wait_child(pid_t pid, int timeout_ms) {
  int status = 0;
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd >= 0 && timeout_ms > 0) {
    double deadline = now_ms() + timeout_ms;
    for (;;) {
      int left = (int)(deadline - now_ms());
      struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
      int n = left > 0 ? poll(&pfd, 1, left) : 0;
      if (n > 0) break;
      if (n < 0 && errno == EINTR) continue;
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
      close(pidfd);
      return -ETIMEDOUT;
    }
  }
  if (pidfd >= 0) close(pidfd);
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -errno;
  }
  return status;
}

static int read_spawn_status(int status_fd, const sl_criu_exec *exec, const char *criu,
                             sl_error *err) {
  int report[2];
  ssize_t n = read(status_fd, report, sizeof report);
  if (n != (ssize_t)sizeof report) return 0;
  if (report[1] >= 0 && exec != NULL && (size_t)report[1] < exec->join_cgroup_count)
    return sl_error_errno(err, report[0], "cannot join cgroup %s",
                          exec->join_cgroups[report[1]]);
  if (report[1] == -2) return sl_error_errno(err, report[0], "cannot execute CRIU at %s", criu);
  if (report[1] == -3)
    return sl_error_errno(err, report[0], "cannot create a network namespace for CRIU");
  return sl_error_errno(err, report[0], "cannot set up the CRIU process");
}

/* Fork and exec argv; returns the child's pid or a negative errno. */
static pid_t spawn(char *const *argv, const sl_criu_exec *exec, int output_fd, int *status_fd,
                   sl_error *err) {
  char **env = build_env(exec);
  if (env == NULL) return sl_error_set(err, ENOMEM, "out of memory starting CRIU");
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) < 0) {
    free(env);
    return sl_error_errno(err, errno, "cannot create a pipe for CRIU");
  }
  pid_t pid = fork();
  if (pid == 0) exec_child(argv, env, exec, output_fd, pipefd[1]);
  int saved = errno;
  free(env);
  close(pipefd[1]);
  if (pid < 0) {
    close(pipefd[0]);
    return sl_error_errno(err, saved, "cannot fork CRIU");
  }
  *status_fd = pipefd[0];
  return pid;
}

static int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

/* criu check writes its verdict to stdout and stderr, not to a log. */
static int report_check_failure(int output_fd, const sl_criu_result *res, sl_error *err) {
  char text[4096];
  ssize_t n = pread(output_fd, text, sizeof text - 1, 0);
  text[n > 0 ? n : 0] = '\0';
  char lines[SL_ERROR_MSG_MAX - 128];
  if (sl_criu_error_lines(text, lines, sizeof lines) == 0) {
    char *end = text + strlen(text);
    while (end > text && end[-1] == '\n') *--end = '\0';
    char *last = strrchr(text, '\n');
    /* The last line is cut on purpose to fit the error message. */
    snprintf(lines, sizeof lines, "%.*s", (int)sizeof lines - 1, last ? last + 1 : text);
  }
  return sl_error_set(err, EIO, "criu check failed: exit status %d: %s", res->exit_status, lines);
}

static int run_argv(const sl_criu_opts *opts, char *const *argv, const sl_criu_exec *exec,
                    sl_criu_result *res, sl_error *err) {
  char output_path[4096];
  int output_fd = open_output(opts, output_path, sizeof output_path, err);
  if (output_fd < 0) return output_fd;
  if (opts->command != SL_CRIU_CHECK)
    snprintf(res->log_path, sizeof res->log_path, "%s/%s", opts->work_dir,
             sl_criu_log_name(opts));

  double start = now_ms();
  int status_fd = -1;
  pid_t pid = spawn(argv, exec, output_fd, &status_fd, err);
  if (pid < 0) {
    close(output_fd);
    return (int)pid;
  }
  int status = wait_child(pid, exec ? exec->timeout_ms : 0);
  res->elapsed_ms = now_ms() - start;
  int rc = read_spawn_status(status_fd, exec, argv[0], err);
  close(status_fd);

  if (rc == 0 && status == -ETIMEDOUT)
    rc = sl_error_set(err, ETIMEDOUT, "criu %s timed out after %d ms (log: %s)", argv[1],
                      exec->timeout_ms, res->log_path[0] ? res->log_path : "none");
  else if (rc == 0 && status < 0)
    rc = sl_error_errno(err, -status, "cannot wait for CRIU");
  if (rc == 0) res->exit_status = exit_code_of(status);
  if (rc == 0 && res->exit_status != 0)
    rc = opts->command == SL_CRIU_CHECK
             ? report_check_failure(output_fd, res, err)
             : report_failure(opts, res, output_path, err);
  close(output_fd);
  return rc;
}

int sl_criu_run(const sl_criu_opts *opts, const sl_criu_exec *exec, sl_criu_result *result,
                sl_error *err) {
  sl_criu_result local;
  sl_criu_result *res = result ? result : &local;
  memset(res, 0, sizeof *res);
  res->exit_status = -1;

  sl_argv args;
  int rc = sl_criu_build_argv(opts, sl_criu_path(), &args, err);
  if (rc < 0) return rc;
  char line[2048];
  SL_DEBUG("criu.start", "command=%s argv=\"%s\"", args.argv[1],
           sl_criu_format_argv(args.argv, line, sizeof line));
  rc = run_argv(opts, args.argv, exec, res, err);
  if (rc == 0)
    SL_DEBUG("criu.done", "command=%s ms=%.1f", args.argv[1], res->elapsed_ms);
  else
    SL_DEBUG("criu.failed", "command=%s ms=%.1f error=\"%s\"", args.argv[1], res->elapsed_ms,
             err ? err->msg : "");
  sl_argv_free(&args);
  return rc;
}
