/* The "fresh" launcher: clone PID 1 in new namespaces and exec the agent. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "monitor.h"
#include "proc_init.h"

#define NAMESPACE_FLAGS (CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET)

/* The agent's environment: PATH, HOME and LANG defaults, then the spec's
 * entries (which override a default of the same name). */
static char **agent_env(const sl_proc_config *cfg) {
  static const char *const defaults[] = {
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root",
      "LANG=C.UTF-8", NULL};
  char **env = NULL;
  size_t n = 0;
  for (const char *const *d = defaults; *d; d++) {
    size_t key = (size_t)(strchr(*d, '=') - *d) + 1;
    int overridden = 0;
    for (size_t i = 0; i < cfg->nenv; i++)
      if (strncmp(cfg->env[i], *d, key) == 0) overridden = 1;
    if (!overridden && sl_strv_push(&env, &n, *d) < 0) return NULL;
  }
  for (size_t i = 0; i < cfg->nenv; i++)
    if (sl_strv_push(&env, &n, cfg->env[i]) < 0) return NULL;
  return env;
}

/* Run in the child: restore the signal state PID 1 should start with. */
static void reset_signals(void) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGPIPE, SIG_DFL);
}

/* Read the child's report: EOF with no data means exec succeeded. */
static int read_report(int fd, pid_t pid, sl_error *err) {
  char buf[600];
  size_t used = 0;
  ssize_t n;
  while ((n = read(fd, buf + used, sizeof buf - 1 - used)) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    used += (size_t)n;
    if (used == sizeof buf - 1) break;
  }
  buf[used] = '\0';
  if (used == 0) return 0;
  waitpid(pid, NULL, 0);
  char *space = strchr(buf, ' ');
  int code = atoi(buf);
  return sl_error_set(err, code > 0 ? code : EIO, "sandbox setup failed: %s",
                      space ? space + 1 : buf);
}

static pid_t clone_init(const sl_monitor *m, int *cgroup_fd, sl_error *err) {
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.flags = NAMESPACE_FLAGS;
  args.exit_signal = SIGCHLD;
  *cgroup_fd = -1;
  if (m->cgroup.mode == SL_CGROUP_V2) {
    /* Born inside its cgroup, so no allocation escapes the limits. */
    *cgroup_fd = open(m->cgroup.dirs[SL_CG_UNIFIED], O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (*cgroup_fd < 0) return sl_error_errno(err, errno, "open %s", m->cgroup.dirs[SL_CG_UNIFIED]);
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = (uint64_t)*cgroup_fd;
  }
  pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
  if (pid < 0) return sl_error_errno(err, errno, "clone3 with new namespaces");
  return pid;
}

int sl_monitor_launch_fresh(sl_monitor *m, pid_t *init_pid, sl_error *err) {
  char *argv[] = {(char *)SL_AGENT_PATH, (char *)"--listen", (char *)SL_AGENT_SOCKET, NULL};
  char **envp = agent_env(&m->cfg);
  int sync[2], report[2];
  if (envp == NULL) return sl_error_set(err, ENOMEM, "out of memory building the environment");
  if (pipe2(sync, O_CLOEXEC) < 0 || pipe2(report, O_CLOEXEC) < 0)
    return sl_error_errno(err, errno, "pipe");

  int cgroup_fd;
  pid_t pid = clone_init(m, &cgroup_fd, err);
  if (pid == 0) {
    close(sync[1]);
    close(report[0]);
    reset_signals();
    sl_proc_init init = {m->cfg.root, m->cfg.hostname, m->cfg.cwd, argv, envp, sync[0], report[1]};
    sl_proc_init_run(&init);
  }
  if (cgroup_fd >= 0) close(cgroup_fd);
  close(sync[0]);
  close(report[1]);
  for (char **e = envp; *e; e++) free(*e);
  free(envp);
  if (pid < 0) {
    close(sync[1]);
    close(report[0]);
    return pid;
  }

  int rc = m->cgroup.mode == SL_CGROUP_V1 ? sl_cgroup_add(&m->cgroup, pid, err) : 0;
  if (rc == 0 && write(sync[1], "g", 1) != 1) rc = sl_error_errno(err, errno, "start the init");
  close(sync[1]); /* on failure the child reads EOF and exits */
  if (rc == 0) rc = read_report(report[0], pid, err);
  close(report[0]);
  if (rc < 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return rc;
  }
  SL_DEBUG("monitor.launched", "sandbox=%s init_pid=%d", m->cfg.id, (int)pid);
  *init_pid = pid;
  return 0;
}
