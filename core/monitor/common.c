#include "common.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "log.h"
#include "sandbox.h"

int sl_monitor_parse_args(int argc, char **argv, sl_monitor_args *out) {
  *out = (sl_monitor_args){.backend = "process", .ready_fd = -1, .creator_pidfd = -1};
  if (argc % 2 == 0) return -1; /* a key without its value */
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--home") == 0) out->home = argv[i + 1];
    else if (strcmp(argv[i], "--id") == 0) out->id = argv[i + 1];
    else if (strcmp(argv[i], "--ready-fd") == 0) out->ready_fd = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--creator-pidfd") == 0) out->creator_pidfd = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--backend") == 0) out->backend = argv[i + 1];
    else return -1;
  }
  return out->home && out->id ? 0 : -1;
}

static FILE *log_file;

static void file_sink(sl_log_level level, const char *line, void *data) {
  (void)level;
  (void)data;
  if (log_file) {
    fprintf(log_file, "%s\n", line);
    fflush(log_file);
  }
}

void sl_monitor_open_log(const char *dir) {
  char logs[PATH_MAX + 8], path[PATH_MAX + 32];
  snprintf(logs, sizeof logs, "%s/log", dir);
  mkdir(logs, 0700);
  snprintf(path, sizeof path, "%s/monitor.log", logs);
  log_file = fopen(path, "ae");
  /* Sanitizer reports and crashes go to stderr: keep them with the log. */
  if (log_file) dup2(fileno(log_file), 2);
  sl_log_set_sink(file_sink, NULL);
  if (getenv("SANDLOT_LOG") == NULL) sl_log_set_level(SL_LOG_INFO);
}

int sl_monitor_signals(sl_error *err) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) return sl_error_errno(err, errno, "sigprocmask");
  signal(SIGPIPE, SIG_IGN);
  int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (fd < 0) return sl_error_errno(err, errno, "signalfd");
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
    int e = errno;
    close(fd);
    return sl_error_errno(err, e, "become child subreaper");
  }
  return fd;
}

void sl_monitor_answer(int *ready_fd, int rc, const sl_error *err) {
  if (*ready_fd < 0) return;
  char line[SL_ERROR_MSG_MAX + 64];
  if (rc == 0)
    snprintf(line, sizeof line, "ok\n");
  else
    snprintf(line, sizeof line, "err %s %s\n", sl_errname(err->code), err->msg);
  ssize_t ignored = write(*ready_fd, line, strlen(line));
  (void)ignored;
  close(*ready_fd);
  *ready_fd = -1;
}

int sl_monitor_arm(int timer_fd, int64_t deadline_ms, sl_error *err) {
  struct itimerspec spec = {{0, 0}, {0, 0}};
  if (deadline_ms > 0) {
    spec.it_value.tv_sec = deadline_ms / 1000;
    spec.it_value.tv_nsec = (deadline_ms % 1000) * 1000000L;
  }
  if (timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &spec, NULL) < 0)
    return sl_error_errno(err, errno, "arm the timeout");
  return 0;
}

void sl_monitor_reply(int fd, const char *line) {
  ssize_t ignored = send(fd, line, strlen(line), MSG_NOSIGNAL);
  (void)ignored;
}

void sl_monitor_reply_error(int fd, const sl_error *err) {
  char line[SL_ERROR_MSG_MAX + 64];
  snprintf(line, sizeof line, "err %s %s\n", sl_errname(err->code), err->msg);
  sl_monitor_reply(fd, line);
}

int sl_monitor_parse_timeout(const char *arg, int64_t *seconds, sl_error *err) {
  char *end;
  errno = 0;
  long long value = strtoll(arg, &end, 10);
  if (errno || end == arg || *end || value < 0 || value > SL_TIMEOUT_MAX_SEC)
    return sl_error_set(err, EINVAL, "invalid timeout: \"%s\" (expected whole seconds from 0 to %lld)",
                        arg, SL_TIMEOUT_MAX_SEC);
  *seconds = value;
  return 0;
}
