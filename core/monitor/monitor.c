#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "layer_copy.h"
#include "log.h"
#include "oplock.h"
#include "proc_init.h"
#include "proc_overlay.h"
#include "proc_release.h"
#include "proc_util.h"
#include "run.h"
#include "snapshot.h"

/* How long the agent may take to listen after PID 1 starts. */
#define AGENT_READY_TIMEOUT_MS 20000

/* Setup */

int sl_monitor_mount_root(const sl_monitor *m, sl_error *err) {
  const char *dirs[] = {m->cfg.upper, m->cfg.work, m->cfg.root};
  for (size_t i = 0; i < 3; i++)
    if (mkdir(dirs[i], 0755) < 0 && errno != EEXIST) return sl_error_errno(err, errno, "mkdir %s", dirs[i]);
  return sl_overlay_mount((const char *const *)m->cfg.lowers, m->cfg.nlowers, m->cfg.upper,
                          m->cfg.work, m->cfg.root, err);
}

static int reap_init_nohang(sl_monitor *m);

/* Whether the agent accepts a connection on its socket. The socket is
 * looked up inside the sandbox's root (RESOLVE_IN_ROOT, and it must be a
 * socket), never through /proc/<pid>/root, where an absolute symlink
 * that a process of the sandbox planted would resolve against the host's
 * root. A restored fork has other processes from its first moment. */
static int agent_accepts(const sl_monitor *m) {
  sl_error ignored = {0};
  int sock = sl_agent_socket_open_in_root(m->cfg.root, &ignored);
  if (sock < 0) return 0;
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", sock);
  int fd = sl_unix_connect(path, &ignored);
  close(sock);
  if (fd < 0) return 0;
  close(fd);
  return 1;
}

static int wait_for_agent(sl_monitor *m, sl_error *err) {
  int64_t deadline = sl_monotonic_ms() + AGENT_READY_TIMEOUT_MS;
  while (sl_monotonic_ms() < deadline) {
    if (agent_accepts(m)) return 0;
    if (reap_init_nohang(m))
      return sl_error_set(err, ECHILD, "agent exited before it listened (exit status %d, signal %d)",
                          m->exit_status, m->exit_signal);
    struct timespec ts = {0, 1000000L};
    nanosleep(&ts, NULL);
  }
  return sl_error_set(err, ETIMEDOUT, "agent did not listen on %s%s within %d ms", m->cfg.root,
                      SL_AGENT_SOCKET, AGENT_READY_TIMEOUT_MS);
}

static sl_monitor_launch_fn pick_launcher(const char *name) {
  if (name == NULL || strcmp(name, "fresh") == 0) return sl_monitor_launch_fresh;
  if (strcmp(name, "fork") == 0) return sl_monitor_launch_fork;
  if (strcmp(name, "resume") == 0) return sl_monitor_launch_resume;
  return NULL;
}

/* The host's handle on the agent is a bind mount of the socket's inode
 * at sandboxes/<id>/agent.sock (sl_agent_socket_publish), which the
 * sandbox cannot redirect later. The socket found may belong to another
 * process of the sandbox than the agent, so the host treats whatever
 * replies there as untrusted input. */
int sl_monitor_start_init(sl_monitor *m, const char *launch, sl_error *err) {
  sl_monitor_launch_fn launcher = pick_launcher(launch);
  if (launcher == NULL) return sl_error_set(err, EINVAL, "unknown launch mode: %s", launch);
  m->init_done = 0;
  if (launcher(m, &m->init_pid, err) < 0) return sl_error_wrap(err, "start PID 1");
  m->init_start = sl_pid_start_time(m->init_pid);
  if (wait_for_agent(m, err) < 0) return -err->code;
  char host[PATH_MAX + 32];
  snprintf(host, sizeof host, "%s/%s", m->dir, SL_AGENT_SOCKET_HOST);
  return sl_agent_socket_publish(m->cfg.root, host, err);
}

int sl_monitor_record_running(sl_monitor *m, sl_error *err) {
  char cgroups[SL_SANDBOX_PATH_MAX];
  if (sl_cgroup_format(&m->cgroup, cgroups, sizeof cgroups) < 0)
    return sl_error_set(err, ENOSPC, "cgroup paths too long");
  return sl_sbstore_set_running(m->store, m->cfg.id, m->init_pid, m->init_start, getpid(),
                                cgroups, err);
}

/* A resume no longer needs the images of its pause once the tree runs. */
static void drop_pause_images(const sl_monitor *m) {
  if (!m->cfg.resume || m->cfg.launch == NULL || strcmp(m->cfg.launch, "resume") != 0) return;
  char images[PATH_MAX + 16];
  snprintf(images, sizeof images, "%s/%s", m->dir, SL_PAUSE_DIR);
  sl_error err = {0};
  if (sl_layer_remove(images, &err) < 0)
    SL_WARN("monitor.pause_images_left", "sandbox=%s error=\"%s\"", m->cfg.id, err.msg);
}

static int setup(sl_monitor *m, sl_error *err) {
  sl_cgroup_layout layout;
  if (sl_cgroup_detect(&layout, err) < 0) return -err->code;
  /* gc derives these paths from the id while the row has none. */
  sl_cgroup_for(&layout, m->cfg.id, &m->cgroup);
  if (sl_cgroup_create(&m->cgroup, &m->cfg.limits, err) < 0) return -err->code;
  if (sl_monitor_mount_root(m, err) < 0) return -err->code;

  m->listen_fd = sl_unix_listen(m->socket_path, err);
  if (m->listen_fd < 0) return m->listen_fd;
  if (sl_monitor_start_init(m, m->cfg.launch, err) < 0) return -err->code;

  int64_t deadline = m->cfg.timeout_ms > 0 ? sl_now_ms() + m->cfg.timeout_ms : 0;
  if (sl_monitor_set_deadline(m, deadline, err) < 0) return -err->code;
  if (deadline > 0 && sl_sbstore_set_deadline(m->store, m->cfg.id, m->cfg.timeout_ms, deadline,
                                              m->cfg.on_timeout, err) < 0)
    return -err->code;
  if (sl_monitor_record_running(m, err) < 0) return -err->code;
  drop_pause_images(m);
  return 0;
}

static void answer_creator(sl_monitor *m, int rc, const sl_error *err) {
  sl_monitor_answer(&m->ready_fd, rc, err);
}

/* Lifetime */

static void record_exit(sl_monitor *m, int status) {
  m->init_done = 1;
  m->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  m->exit_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  /* The cgroup's OOM killer ends PID 1 with SIGKILL, like a kill would. */
  if (m->end_reason == NULL && m->exit_signal == SIGKILL && sl_cgroup_oom_kills(&m->cgroup) > 0)
    m->end_reason = "oom";
  if (m->end_reason == NULL) m->end_reason = "exited";
  SL_INFO("monitor.init_exit", "sandbox=%s pid=%d exit_status=%d signal=%d reason=%s", m->cfg.id,
          (int)m->init_pid, m->exit_status, m->exit_signal, m->end_reason);
}

/* Reap every exited child; other children are launch helpers or
 * reparented orphans. Returns 1 once PID 1 has been reaped. */
static int reap_init_nohang(sl_monitor *m) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
    if (pid == m->init_pid) record_exit(m, status);
  return m->init_done;
}

void sl_monitor_kill(sl_monitor *m, const char *reason) {
  if (m->end_reason == NULL) m->end_reason = reason;
  SL_INFO("monitor.kill", "sandbox=%s reason=%s", m->cfg.id, reason);
  if (m->init_pid > 0 && !m->init_done) kill(m->init_pid, SIGKILL);
  sl_error err = {0};
  if (sl_cgroup_exists(&m->cgroup) && sl_cgroup_kill_all(&m->cgroup, 10000, &err) < 0)
    SL_ERROR("monitor.kill_failed", "sandbox=%s error=\"%s\"", m->cfg.id, err.msg);
}

int sl_monitor_set_deadline(sl_monitor *m, int64_t deadline_ms, sl_error *err) {
  if (sl_monitor_arm(m->timer_fd, deadline_ms, err) < 0) return -err->code;
  m->deadline_ms = deadline_ms;
  return 0;
}

/* The timeout waits for an operation in progress (a snapshot) rather
 * than cutting it off: when op.lock is held it retries in 100 ms. */
void sl_monitor_on_timeout(sl_monitor *m) {
  sl_error err = {0};
  int lock = sl_op_lock(m->dir, 0, &err);
  if (lock < 0) {
    sl_monitor_set_deadline(m, sl_now_ms() + 100, &err);
    return;
  }
  if (m->cfg.on_timeout == SL_ON_TIMEOUT_KILL) {
    sl_monitor_kill(m, "timeout");
    sl_op_unlock(lock);
    return;
  }
  bool files_only = m->cfg.on_timeout == SL_ON_TIMEOUT_PAUSE_FS;
  SL_INFO("monitor.timeout_pause", "sandbox=%s files_only=%d", m->cfg.id, (int)files_only);
  sl_monitor_set_deadline(m, 0, &err);
  int rc = sl_monitor_pause(m, files_only, &err);
  if (rc < 0 && !files_only) {
    /* Keep at least the files rather than run past the timeout. */
    SL_WARN("monitor.timeout_pause_failed", "sandbox=%s error=\"%s\" note=\"keeping the files "
            "only\"", m->cfg.id, err.msg);
    rc = sl_monitor_pause(m, true, &err);
  }
  if (rc < 0) {
    SL_ERROR("monitor.pause_failed", "sandbox=%s error=\"%s\"", m->cfg.id, err.msg);
    sl_monitor_kill(m, "timeout");
  }
  sl_op_unlock(lock);
}

void sl_monitor_reap_replaced(sl_monitor *m) {
  if (m->init_pid <= 0) return;
  int status;
  while (waitpid(m->init_pid, &status, 0) < 0 && errno == EINTR) {
  }
  m->init_pid = 0;
}

static void handle_signals(sl_monitor *m) {
  struct signalfd_siginfo info;
  while (read(m->signal_fd, &info, sizeof info) == (ssize_t)sizeof info) {
    if (info.ssi_signo == SIGCHLD) {
      reap_init_nohang(m);
    } else {
      SL_INFO("monitor.signal", "sandbox=%s signal=%u", m->cfg.id, info.ssi_signo);
      sl_monitor_kill(m, "killed");
    }
  }
}

static void run_loop(sl_monitor *m) {
  while (!m->init_done) {
    struct pollfd fds[4 + SL_MONITOR_MAX_CONNS] = {
        {m->signal_fd, POLLIN, 0},
        {m->listen_fd, POLLIN, 0},
        {m->timer_fd, POLLIN, 0},
        {m->creator_pidfd, POLLIN, 0}, /* ignored by poll when -1 */
    };
    int conns = sl_monitor_requests_poll(&m->requests, fds + 4);
    if (poll(fds, (nfds_t)(4 + conns), sl_monitor_requests_timeout(&m->requests)) < 0) {
      if (errno == EINTR) continue;
      SL_ERROR("monitor.poll", "sandbox=%s error=\"%s\"", m->cfg.id, strerror(errno));
      sl_monitor_kill(m, "killed");
      reap_init_nohang(m);
      continue;
    }
    if (fds[0].revents) handle_signals(m);
    if (fds[1].revents && !m->init_done) sl_monitor_requests_accept(&m->requests, m->listen_fd);
    if (fds[2].revents) {
      uint64_t expirations;
      if (read(m->timer_fd, &expirations, sizeof expirations) > 0 && m->deadline_ms > 0)
        sl_monitor_on_timeout(m);
    }
    if (fds[3].revents && m->end_reason == NULL) sl_monitor_kill(m, "creator_exited");
    if (!m->init_done) sl_monitor_requests_ready(&m->requests, fds + 4, conns);
  }
}

static void finish(sl_monitor *m) {
  sl_error err = {0};
  sl_monitor_requests_close(&m->requests);
  if (m->listen_fd >= 0) close(m->listen_fd);
  unlink(m->socket_path);
  if (m->paused) {
    SL_INFO("monitor.stop", "sandbox=%s reason=paused", m->cfg.id);
    return; /* the pause has released what the sandbox held */
  }
  sl_sandbox_info info;
  if (sl_sbstore_get(m->store, m->cfg.id, &info, &err) == 0) {
    sl_cgroup_format(&m->cgroup, info.cgroups, sizeof info.cgroups);
    if (sl_proc_release(&info, m->dir, &err) < 0)
      SL_ERROR("monitor.release_failed", "sandbox=%s error=\"%s\"", m->cfg.id, err.msg);
  }
  if (sl_sbstore_set_ended(m->store, m->cfg.id, m->exit_status, m->exit_signal,
                           m->end_reason ? m->end_reason : "exited", &err) < 0)
    SL_ERROR("monitor.record_failed", "sandbox=%s error=\"%s\"", m->cfg.id, err.msg);
  for (int i = 0; i < m->nwaiters; i++) {
    ssize_t ignored = write(m->waiters[i], "ok\n", 3);
    (void)ignored;
    close(m->waiters[i]);
  }
  SL_INFO("monitor.stop", "sandbox=%s reason=%s", m->cfg.id, m->end_reason);
}

/* Undo a failed setup with the same release as at the end, then report
 * the error to the creator. */
static int fail_setup(sl_monitor *m, sl_error *err) {
  SL_ERROR("monitor.setup_failed", "sandbox=%s error=\"%s: %s\"", m->cfg.id, sl_errname(err->code),
           err->msg);
  if (m->init_pid > 0 && !m->init_done) {
    kill(m->init_pid, SIGKILL);
    waitpid(m->init_pid, NULL, 0);
  }
  if (m->listen_fd >= 0) close(m->listen_fd);
  unlink(m->socket_path);
  sl_sandbox_info info;
  sl_error ignored = {0};
  if (sl_sbstore_get(m->store, m->cfg.id, &info, &ignored) == 0) {
    sl_cgroup_format(&m->cgroup, info.cgroups, sizeof info.cgroups);
    info.init_pid = 0;
    /* A failed resume leaves the sandbox paused with its files. */
    if (m->cfg.resume) sl_proc_release_paused(&info, m->dir, &ignored);
    else sl_proc_release(&info, m->dir, &ignored);
  }
  answer_creator(m, -1, err);
  return 1;
}

static int init_monitor(sl_monitor *m, int argc, char **argv, sl_error *err) {
  const char *home, *id;
  memset(m, 0, sizeof *m);
  m->listen_fd = m->signal_fd = m->timer_fd = -1;
  sl_monitor_args args;
  int parsed = sl_monitor_parse_args(argc, argv, &args);
  home = args.home;
  id = args.id;
  m->ready_fd = args.ready_fd;
  m->creator_pidfd = args.creator_pidfd;
  if (parsed < 0)
    return sl_error_set(err, EINVAL, "%s", SL_MONITOR_USAGE);
  /* CRIU and its lazy-pages daemon must not keep the creator's pipe
   * open: the creator reads it up to EOF. */
  if (m->ready_fd >= 0) fcntl(m->ready_fd, F_SETFD, FD_CLOEXEC);
  if (m->creator_pidfd >= 0) fcntl(m->creator_pidfd, F_SETFD, FD_CLOEXEC);
  if (sl_path_format(m->dir, sizeof m->dir, err, "%s/sandboxes/%s", home, id) < 0 ||
      sl_path_format(m->socket_path, sizeof m->socket_path, err, "%s/monitor.sock", m->dir) < 0)
    return -err->code;
  sl_monitor_open_log(m->dir);
  m->requests = (sl_monitor_requests){.handle = sl_monitor_handle_request, .data = m, .id = id};
  SL_INFO("monitor.start", "sandbox=%s pid=%d", id, (int)getpid());

  char config[PATH_MAX + 16];
  snprintf(config, sizeof config, "%s/config", m->dir);
  if (sl_proc_config_read(config, &m->cfg, err) < 0) return -err->code;
  if (sl_sbstore_open(home, &m->store, err) < 0) return -err->code;
  /* Signals arrive through the signalfd; PID 1 must not inherit the
   * mask, so the launcher unblocks them in its child. */
  m->signal_fd = sl_monitor_signals(err);
  if (m->signal_fd < 0) return m->signal_fd;
  m->timer_fd = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC | TFD_NONBLOCK);
  if (m->timer_fd < 0) return sl_error_errno(err, errno, "timerfd_create");
  return 0;
}

int sl_monitor_main(int argc, char **argv) {
  sl_monitor m;
  sl_error err = {0};
  if (init_monitor(&m, argc, argv, &err) < 0) {
    if (m.cfg.id == NULL) m.cfg.id = strdup("?");
    answer_creator(&m, -1, &err);
    SL_ERROR("monitor.start_failed", "error=\"%s\"", err.msg);
    return 1;
  }
  if (setup(&m, &err) < 0) return fail_setup(&m, &err);
  SL_INFO("monitor.ready", "sandbox=%s init_pid=%d", m.cfg.id, (int)m.init_pid);
  answer_creator(&m, 0, NULL);
  run_loop(&m);
  finish(&m);
  sl_sbstore_close(m.store);
  sl_proc_config_free(&m.cfg);
  return 0;
}
