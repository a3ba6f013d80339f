/* Starting a child process: PATH lookup, environment, fork and exec. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

extern char **environ;

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static const char *env_get(char *const envp[], const char *name) {
  size_t len = strlen(name);
  for (; envp != NULL && *envp != NULL; envp++)
    if (strncmp(*envp, name, len) == 0 && (*envp)[len] == '=') return *envp + len + 1;
  return NULL;
}

static int is_executable_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

int resolve_program(const char *name, char *const envp[], char **out, sl_error *err) {
  char quoted[SL_SUBJECT_MAX];
  if (name[0] == '\0')
    return sl_error_set(err, ENOENT, "program not found: %s", sl_subject(quoted, sizeof quoted, name));
  if (strchr(name, '/') != NULL) {
    *out = strdup(name);
    return *out ? 0 : sl_error_set(err, ENOMEM, "out of memory");
  }
  const char *path = env_get(envp, "PATH");
  if (path == NULL) path = DEFAULT_PATH;
  size_t name_len = strlen(name);
  while (*path != '\0') {
    const char *colon = strchr(path, ':');
    size_t dir_len = colon ? (size_t)(colon - path) : strlen(path);
    char *candidate = malloc(dir_len + name_len + 3);
    if (candidate == NULL) return sl_error_set(err, ENOMEM, "out of memory");
    /* An empty PATH entry means the current folder, as for execvp. */
    sprintf(candidate, "%.*s/%s", (int)(dir_len ? dir_len : 1), dir_len ? path : ".", name);
    if (is_executable_file(candidate)) {
      *out = candidate;
      return 0;
    }
    free(candidate);
    path += dir_len + (colon ? 1 : 0);
  }
  return sl_error_set(err, ENOENT, "program not found: %s", sl_subject(quoted, sizeof quoted, name));
}

static int env_overridden(const char *entry, char *const overrides[]) {
  size_t len = strcspn(entry, "=");
  for (; overrides != NULL && *overrides != NULL; overrides++)
    if (strncmp(*overrides, entry, len) == 0 && (*overrides)[len] == '=') return 1;
  return 0;
}

int build_env(char *const overrides[], char ***out, sl_error *err) {
  size_t n = 0, k = 0;
  for (char **e = environ; e != NULL && *e != NULL; e++) n++;
  for (char *const *e = overrides; e != NULL && *e != NULL; e++) {
    if (strchr(*e, '=') == NULL || **e == '=')
      return sl_error_set(err, EINVAL, "invalid environment entry (expected NAME=value): %s",
                          *e);
    n++;
  }
  /* The array borrows its strings from environ and `overrides`. */
  char **env = calloc(n + 1, sizeof *env);
  if (env == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  for (char **e = environ; e != NULL && *e != NULL; e++)
    if (!env_overridden(*e, overrides)) env[k++] = *e;
  for (char *const *e = overrides; e != NULL && *e != NULL; e++) env[k++] = *e;
  *out = env;
  return 0;
}

enum { STAGE_CHDIR = 1, STAGE_EXEC = 2 };

/* Runs in the child between fork and exec: only async-signal-safe calls. */
static void child_exec(const char *path, char *const argv[], char *const envp[],
                       const char *cwd, int in, int out, int errfd, int report) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGPIPE, SIG_DFL);
  setsid();
  dup2(in, 0);
  dup2(out, 1);
  dup2(errfd, 2);
  umask(022);
  int msg[2] = {STAGE_CHDIR, 0};
  if (cwd != NULL && chdir(cwd) < 0) {
    msg[1] = errno;
  } else {
    execve(path, argv, envp);
    msg[0] = STAGE_EXEC;
    msg[1] = errno;
  }
  ssize_t n = write(report, msg, sizeof msg);
  (void)n;
  _exit(127);
}

static int exec_error(int stage, int code, const char *path, const char *cwd, sl_error *err) {
  char quoted[SL_SUBJECT_MAX];
  if (stage == STAGE_CHDIR) {
    sl_subject(quoted, sizeof quoted, cwd);
    if (code == ENOENT) return sl_error_set(err, ENOENT, "no such directory: %s", quoted);
    if (code == ENOTDIR) return sl_error_set(err, ENOTDIR, "not a directory: %s", quoted);
    return sl_error_errno(err, code, "cannot change to directory %s", quoted);
  }
  sl_subject(quoted, sizeof quoted, path);
  if (code == ENOENT) return sl_error_set(err, ENOENT, "program not found: %s", quoted);
  if (code == EACCES) return sl_error_set(err, EACCES, "permission denied: %s", quoted);
  if (code == ENOEXEC) return sl_error_set(err, ENOEXEC, "not an executable: %s", quoted);
  return sl_error_errno(err, code, "exec %s failed", quoted);
}

static void close_all(int *fds, int n) {
  for (int i = 0; i < n; i++)
    if (fds[i] >= 0) close(fds[i]);
}

static int make_pipes(int p[8], sl_error *err) {
  for (int i = 0; i < 8; i++) p[i] = -1;
  for (int i = 0; i < 4; i++)
    if (pipe2(p + 2 * i, O_CLOEXEC) < 0) {
      int code = errno;
      close_all(p, 8);
      return sl_error_errno(err, code, "pipe failed");
    }
  return 0;
}

int spawn_process(const char *path, char *const argv[], char *const envp[], const char *cwd,
                  pid_t *pid_out, int fds[3], sl_error *err) {
  /* p[0..1] stdin, p[2..3] stdout, p[4..5] stderr, p[6..7] exec report. */
  int p[8];
  if (make_pipes(p, err) < 0) return -err->code;
  pid_t pid = fork();
  if (pid < 0) {
    int code = errno;
    close_all(p, 8);
    return sl_error_errno(err, code, "fork failed");
  }
  if (pid == 0) child_exec(path, argv, envp, cwd, p[0], p[3], p[5], p[7]);

  close(p[0]);
  close(p[3]);
  close(p[5]);
  close(p[7]);
  int msg[2];
  ssize_t n;
  do {
    n = read(p[6], msg, sizeof msg);
  } while (n < 0 && errno == EINTR);
  close(p[6]);
  if (n == (ssize_t)sizeof msg) {
    waitpid(pid, NULL, 0);
    close(p[1]);
    close(p[2]);
    close(p[4]);
    return exec_error(msg[0], msg[1], path, cwd, err);
  }
  fds[0] = p[1];
  fds[1] = p[2];
  fds[2] = p[4];
  for (int i = 0; i < 3; i++) fcntl(fds[i], F_SETFL, O_NONBLOCK);
  *pid_out = pid;
  return 0;
}
