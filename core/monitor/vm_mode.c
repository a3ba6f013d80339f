/* sandlot-monitor --backend vm (see vm_mode.h). */
#include "vm_mode.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "log.h"
#include "oplock.h"
#include "proc_util.h"
#include "qmp.h"
#include "run.h"
#include "sandbox_store.h"
#include "vm.h"
#include "vm_backend.h"
#include "vm_internal.h"
#include "vm_monitor_config.h"

#define MAX_WAITERS 16

typedef struct vm_monitor {
  sl_monitor_args args;
  sl_vm_monitor_config cfg;
  char dir[PATH_MAX];
  char socket_path[PATH_MAX + 16];
  sl_sbstore *store;
  sl_vm *vm;
  sl_qmp_sync *events;       /* events.sock, NULL when not connected */
  int signal_fd, listen_fd, timer_fd;
  pid_t qemu_pid;            /* the current QEMU, 0 once it has exited */
  int64_t deadline_ms;       /* 0: no timeout */
  bool done;                 /* QEMU exited, or the VM was paused */
  bool paused;
  int exit_status, exit_signal;
  const char *end_reason;    /* set once the sandbox is ending */
  char shutdown_reason[64];  /* from QEMU's SHUTDOWN event */
  int waiters[MAX_WAITERS];  /* kill requests, replied to at the end */
  int nwaiters;
  sl_monitor_requests requests; /* control connections */
} vm_monitor;

/* ---- Launch ------------------------------------------------------------- */

static int launch_boot(vm_monitor *m, sl_error *err) {
  sl_vm_options opt = {.home = m->args.home, .base_disk = m->cfg.base_disk,
                       .agent = m->cfg.agent, .memory_mb = m->cfg.memory_mb,
                       .hostname = m->cfg.hostname,
                       .env = (const char *const *)m->cfg.env,
                       .cwd = m->cfg.cwd[0] ? m->cfg.cwd : NULL};
  return sl_vm_create(&opt, m->args.id, &m->vm, err);
}

static int launch_fork(vm_monitor *m, sl_error *err) {
  sl_vm_fork_options opt = {.home = m->args.home, .id = m->args.id,
                            .from = {m->cfg.image_dir, m->cfg.image_disk},
                            .hostname = m->cfg.hostname,
                            .on_fork = m->cfg.on_fork[0] ? m->cfg.on_fork : NULL};
  int on_fork_exit = 0;
  int rc = sl_vm_fork(&opt, &on_fork_exit, NULL, &m->vm, err);
  if (rc == 0 && on_fork_exit != 0) {
    rc = sl_error_set(err, EIO, "on_fork command failed with exit status %d: %s", on_fork_exit,
                      m->cfg.on_fork);
    vm_remove_files(m->vm);
    sl_vm_close(m->vm);
    m->vm = NULL;
  }
  return rc;
}

/* A failed resume leaves the VM paused with its files. */
static int launch_resume(vm_monitor *m, sl_error *err) {
  int rc = sl_vm_open(m->args.home, m->args.id, &m->vm, err);
  if (rc == 0) rc = sl_vm_resume(m->vm, err);
  if (rc < 0) {
    sl_vm_close(m->vm);
    m->vm = NULL;
  }
  return rc;
}

/* Connect to events.sock; the monitor works without it, only the reason
 * of a shutdown is then unknown. */
static void watch_events(vm_monitor *m) {
  sl_qmp_sync_close(m->events);
  m->events = NULL;
  char path[PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/events.sock", m->dir);
  sl_error err = {0};
  if (sl_qmp_sync_connect(path, 5000, &m->events, &err) < 0)
    SL_WARN("monitor.events", "sandbox=%s error=\"%s\"", m->args.id, err.msg);
}

static int record_running(vm_monitor *m, sl_error *err) {
  m->qemu_pid = sl_vm_pid(m->vm);
  watch_events(m);
  return sl_sbstore_set_running(m->store, m->args.id, m->qemu_pid,
                                sl_pid_start_time(m->qemu_pid), getpid(), "", err);
}

static int set_deadline(vm_monitor *m, int64_t deadline_ms, sl_error *err) {
  int rc = sl_monitor_arm(m->timer_fd, deadline_ms, err);
  if (rc == 0) m->deadline_ms = deadline_ms;
  return rc;
}

static int launch(vm_monitor *m, sl_error *err) {
  int rc;
  switch (m->cfg.launch) {
    case SL_VM_LAUNCH_BOOT: rc = launch_boot(m, err); break;
    case SL_VM_LAUNCH_FORK: rc = launch_fork(m, err); break;
    default: rc = launch_resume(m, err); break;
  }
  /* sl_vm_create, sl_vm_fork and sl_vm_resume name their operation and
   * the sandbox. */
  if (rc < 0) return rc;
  int64_t deadline = m->cfg.timeout_ms > 0 ? sl_now_ms() + m->cfg.timeout_ms : 0;
  rc = set_deadline(m, deadline, err);
  if (rc == 0 && deadline > 0)
    rc = sl_sbstore_set_deadline(m->store, m->args.id, m->cfg.timeout_ms, deadline,
                                 m->cfg.on_timeout, err);
  if (rc == 0) rc = record_running(m, err);
  return rc;
}

/* ---- Ending ------------------------------------------------------------- */

static void record_exit(vm_monitor *m, int status) {
  m->qemu_pid = 0;
  m->done = true;
  m->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  m->exit_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  if (m->end_reason == NULL) m->end_reason = "exited";
  SL_INFO("monitor.qemu_exit", "sandbox=%s exit_status=%d signal=%d reason=%s shutdown=%s",
          m->args.id, m->exit_status, m->exit_signal, m->end_reason,
          m->shutdown_reason[0] ? m->shutdown_reason : "unknown");
}

/* Reap every exited child: QEMU, or the parents it leaves when it
 * daemonizes, or a QEMU that a rollback replaced. */
static void reap_children(vm_monitor *m) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
    if (pid == m->qemu_pid) record_exit(m, status);
}

static void kill_vm(vm_monitor *m, const char *reason) {
  if (m->end_reason == NULL) m->end_reason = reason;
  SL_INFO("monitor.kill", "sandbox=%s reason=%s", m->args.id, reason);
  sl_error err = {0};
  if (m->vm != NULL && sl_vm_kill(m->vm, &err) < 0)
    SL_ERROR("monitor.kill_failed", "sandbox=%s error=\"%s\"", m->args.id, err.msg);
  reap_children(m);
}

/* Remove what the ended VM held (vm_release_ended). The folder keeps
 * vm.json, vm-monitor.json, the console log and the monitor's log for a
 * look afterwards. */
static void release(vm_monitor *m) {
  if (m->vm != NULL) vm_release_ended(m->vm);
}

static void finish(vm_monitor *m) {
  sl_monitor_requests_close(&m->requests);
  sl_qmp_sync_close(m->events);
  m->events = NULL;
  if (m->listen_fd >= 0) close(m->listen_fd);
  unlink(m->socket_path);
  if (m->paused) {
    SL_INFO("monitor.stop", "sandbox=%s reason=paused", m->args.id);
    return;
  }
  release(m);
  sl_error err = {0};
  if (sl_sbstore_set_ended(m->store, m->args.id, m->exit_status, m->exit_signal,
                           m->end_reason ? m->end_reason : "exited", &err) < 0)
    SL_ERROR("monitor.record_failed", "sandbox=%s error=\"%s\"", m->args.id, err.msg);
  for (int i = 0; i < m->nwaiters; i++) {
    sl_monitor_reply(m->waiters[i], "ok\n");
    close(m->waiters[i]);
  }
  SL_INFO("monitor.stop", "sandbox=%s reason=%s", m->args.id, m->end_reason);
}

/* ---- Pause and timeout -------------------------------------------------- */

/* Pause the VM to disk (or keep its files only) and end the monitor. The
 * caller holds op.lock. When the pause fails QEMU keeps running. */
static int pause_vm(vm_monitor *m, bool files_only, sl_error *err) {
  /* QEMU's exit is the end of a pause, not of the sandbox. */
  pid_t qemu = m->qemu_pid;
  m->qemu_pid = 0;
  int rc = sl_vm_pause(m->vm, files_only, err);
  if (rc < 0) {
    m->qemu_pid = qemu; /* still running: the pause failed before its quit */
    return rc;
  }
  reap_children(m);
  /* The deadline goes first, so no reader finds the state paused with a
   * deadline. */
  rc = set_deadline(m, 0, err);
  if (rc == 0)
    rc = sl_sbstore_set_deadline(m->store, m->args.id, m->cfg.timeout_ms, 0, m->cfg.on_timeout, err);
  if (rc == 0) rc = sl_sbstore_set_state(m->store, m->args.id, SL_SANDBOX_PAUSED, err);
  if (rc < 0) return rc;
  m->paused = true;
  m->done = true;
  SL_INFO("monitor.paused", "sandbox=%s files_only=%d", m->args.id, (int)files_only);
  return 0;
}

/* The timeout waits for an operation in progress (a snapshot) rather than
 * cutting it off: while op.lock is held it tries again in 100 ms. */
static void on_timeout(vm_monitor *m) {
  sl_error err = {0};
  int lock = sl_op_lock(m->dir, 0, &err);
  if (lock < 0) {
    set_deadline(m, sl_now_ms() + 100, &err);
    return;
  }
  if (m->cfg.on_timeout == SL_ON_TIMEOUT_KILL) {
    kill_vm(m, "timeout");
    sl_op_unlock(lock);
    return;
  }
  bool files_only = m->cfg.on_timeout == SL_ON_TIMEOUT_PAUSE_FS;
  SL_INFO("monitor.timeout_pause", "sandbox=%s files_only=%d", m->args.id, (int)files_only);
  int rc = pause_vm(m, files_only, &err);
  if (rc < 0 && !files_only) {
    SL_WARN("monitor.timeout_pause_failed", "sandbox=%s error=\"%s\" note=\"keeping the files "
            "only\"", m->args.id, err.msg);
    rc = pause_vm(m, true, &err);
  }
  if (rc < 0) {
    SL_ERROR("monitor.pause_failed", "sandbox=%s error=\"%s\"", m->args.id, err.msg);
    kill_vm(m, "timeout");
  }
  sl_op_unlock(lock);
}

/* ---- Rollback ----------------------------------------------------------- */

/* Replace the VM with the state of `snapshot_id` in place: same id,
 * monitor and hostname. The caller holds op.lock and has checked the
 * snapshot's lineage. A failure before QEMU is stopped leaves it running;
 * a later one ends the sandbox ("rollback_failed"). */
static int rollback_vm(vm_monitor *m, const char *snapshot_id, sl_error *err) {
  sl_catalog *cat = sl_sbstore_catalog(m->store);
  sl_snapshot sn = {0};
  vm_image_paths paths;
  int rc = sl_id_validate(SL_ID_SNAPSHOT, snapshot_id, err);
  if (rc == 0) rc = sl_catalog_snapshot_get(cat, snapshot_id, &sn, err);
  if (rc == 0) rc = vm_snapshot_image(cat, &sn, &paths, err);
  if (rc < 0) {
    sl_snapshot_clear(&sn);
    return rc;
  }
  m->qemu_pid = 0; /* the old QEMU's exit is part of the rollback */
  rc = sl_vm_rollback(m->vm, &paths.image, NULL, err);
  reap_children(m);
  if (rc == 0) rc = sl_catalog_sandbox_rebase(cat, m->args.id, sn.id, err);
  if (rc == 0) rc = record_running(m, err);
  sl_snapshot_clear(&sn);
  if (rc < 0) {
    SL_ERROR("monitor.rollback_failed", "sandbox=%s snapshot=%s error=\"%s\"", m->args.id,
             snapshot_id, err->msg);
    kill_vm(m, "rollback_failed");
    m->done = true;
    return rc;
  }
  SL_INFO("monitor.rollback", "sandbox=%s snapshot=%s qemu_pid=%d", m->args.id, snapshot_id,
          (int)m->qemu_pid);
  return 0;
}

/* ---- Control socket ----------------------------------------------------- */

static int handle_set_timeout(vm_monitor *m, const char *arg, char *out, size_t len,
                              sl_error *err) {
  int64_t seconds = 0;
  if (sl_monitor_parse_timeout(arg, &seconds, err) < 0) return -err->code;
  int64_t deadline = seconds > 0 ? sl_now_ms() + seconds * 1000 : 0;
  int rc = sl_sbstore_set_deadline(m->store, m->args.id, seconds * 1000, deadline,
                                   m->cfg.on_timeout, err);
  if (rc == 0) rc = set_deadline(m, deadline, err);
  if (rc == 0) snprintf(out, len, "ok deadline_ms=%" PRId64 "\n", deadline);
  return rc;
}

static void handle_status(vm_monitor *m, char *out, size_t len) {
  sl_sandbox_info info;
  sl_error err = {0};
  const char *state = "unknown";
  if (sl_sbstore_get(m->store, m->args.id, &info, &err) == 0)
    state = sl_sandbox_state_name(info.state);
  if (m->end_reason != NULL) state = "dead";
  snprintf(out, len, "ok state=%s init_pid=%d deadline_ms=%" PRId64 "\n", state,
           (int)m->qemu_pid, m->deadline_ms);
}

/* An sl_monitor_request_fn for the VM monitor `data`. */
static bool handle(void *data, int fd, const char *request) {
  vm_monitor *m = data;
  sl_error err = {0};
  char out[160];
  int rc = 0;
  SL_DEBUG("monitor.request", "sandbox=%s request=\"%s\"", m->args.id, request);
  if (strcmp(request, "kill") == 0 && m->nwaiters < MAX_WAITERS) {
    m->waiters[m->nwaiters++] = fd;
    kill_vm(m, "killed");
    return true;
  }
  snprintf(out, sizeof out, "ok\n");
  if (strcmp(request, "kill") == 0)
    rc = sl_error_set(&err, EBUSY, "too many kill requests waiting");
  else if (strcmp(request, "status") == 0)
    handle_status(m, out, sizeof out);
  else if (strncmp(request, "set_timeout ", 12) == 0)
    rc = handle_set_timeout(m, request + 12, out, sizeof out, &err);
  else if (strcmp(request, "pause") == 0 || strcmp(request, "pause files") == 0)
    rc = pause_vm(m, request[5] != '\0', &err); /* the caller holds op.lock */
  else if (strncmp(request, "rollback ", 9) == 0)
    rc = rollback_vm(m, request + 9, &err);
  else
    rc = sl_error_set(&err, EINVAL, "unknown monitor request: \"%.100s\"", request);
  if (rc < 0) sl_monitor_reply_error(fd, &err);
  else sl_monitor_reply(fd, out);
  return false;
}

/* ---- Events and the loop ------------------------------------------------ */

static bool note_event(const char *event, json_t *data, void *arg) {
  vm_monitor *m = arg;
  if (strcmp(event, "SHUTDOWN") == 0) {
    const char *reason = json_string_value(json_object_get(data, "reason"));
    snprintf(m->shutdown_reason, sizeof m->shutdown_reason, "%s", reason ? reason : "");
    SL_INFO("monitor.shutdown", "sandbox=%s reason=%s", m->args.id, m->shutdown_reason);
  }
  return false; /* keep reading what has arrived */
}

static void read_events(vm_monitor *m) {
  sl_error err = {0};
  int rc = sl_qmp_sync_wait_event(m->events, note_event, m, 0, &err);
  if (rc == -ETIMEDOUT) return; /* everything that had arrived is read */
  sl_qmp_sync_close(m->events); /* QEMU closed it: it is exiting */
  m->events = NULL;
}

static void handle_signals(vm_monitor *m) {
  struct signalfd_siginfo info;
  while (read(m->signal_fd, &info, sizeof info) == (ssize_t)sizeof info) {
    if (info.ssi_signo == SIGCHLD) {
      reap_children(m);
    } else {
      SL_INFO("monitor.signal", "sandbox=%s signal=%u", m->args.id, info.ssi_signo);
      kill_vm(m, "killed");
    }
  }
}

static void on_timer(vm_monitor *m) {
  uint64_t expirations;
  if (read(m->timer_fd, &expirations, sizeof expirations) > 0 && m->deadline_ms > 0)
    on_timeout(m);
}

static void run_loop(vm_monitor *m) {
  while (!m->done) {
    struct pollfd fds[5 + SL_MONITOR_MAX_CONNS] = {
        {m->signal_fd, POLLIN, 0},
        {m->listen_fd, POLLIN, 0},
        {m->timer_fd, POLLIN, 0},
        {m->args.creator_pidfd, POLLIN, 0}, /* ignored by poll when -1 */
        {m->events ? sl_qmp_sync_fd(m->events) : -1, POLLIN, 0},
    };
    int conns = sl_monitor_requests_poll(&m->requests, fds + 5);
    if (poll(fds, (nfds_t)(5 + conns), sl_monitor_requests_timeout(&m->requests)) < 0) {
      if (errno == EINTR) continue;
      SL_ERROR("monitor.poll", "sandbox=%s error=\"%s\"", m->args.id, strerror(errno));
      kill_vm(m, "killed");
      continue;
    }
    if (fds[4].revents && m->events) read_events(m);
    if (fds[0].revents) handle_signals(m);
    if (fds[1].revents && !m->done) sl_monitor_requests_accept(&m->requests, m->listen_fd);
    if (fds[2].revents && !m->done) on_timer(m);
    if (fds[3].revents && m->end_reason == NULL) kill_vm(m, "creator_exited");
    if (!m->done) sl_monitor_requests_ready(&m->requests, fds + 5, conns);
  }
}

/* ---- Setup -------------------------------------------------------------- */

static int init(vm_monitor *m, int argc, char **argv, sl_error *err) {
  memset(m, 0, sizeof *m);
  m->signal_fd = m->listen_fd = m->timer_fd = -1;
  if (sl_monitor_parse_args(argc, argv, &m->args) < 0)
    return sl_error_set(err, EINVAL, "%s", SL_MONITOR_USAGE);
  /* QEMU must not keep the creator's pipe open: the creator reads it up
   * to EOF. */
  if (m->args.ready_fd >= 0) fcntl(m->args.ready_fd, F_SETFD, FD_CLOEXEC);
  if (m->args.creator_pidfd >= 0) fcntl(m->args.creator_pidfd, F_SETFD, FD_CLOEXEC);
  if (sl_path_format(m->dir, sizeof m->dir, err, "%s/sandboxes/%s", m->args.home, m->args.id) < 0 ||
      sl_path_format(m->socket_path, sizeof m->socket_path, err, "%s/monitor.sock", m->dir) < 0)
    return -err->code;
  sl_monitor_open_log(m->dir);
  m->requests = (sl_monitor_requests){.handle = handle, .data = m, .id = m->args.id};
  SL_INFO("monitor.start", "sandbox=%s pid=%d backend=vm", m->args.id, (int)getpid());
  if (sl_vm_monitor_config_read(m->dir, &m->cfg, err) < 0) return -err->code;
  if (sl_sbstore_open(m->args.home, &m->store, err) < 0) return -err->code;
  m->signal_fd = sl_monitor_signals(err);
  if (m->signal_fd < 0) return m->signal_fd;
  m->timer_fd = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC | TFD_NONBLOCK);
  if (m->timer_fd < 0) return sl_error_errno(err, errno, "timerfd_create");
  m->listen_fd = sl_unix_listen(m->socket_path, err);
  return m->listen_fd < 0 ? m->listen_fd : 0;
}

/* Undo a failed launch: what boot and fork made is gone already (they
 * clean up), a failed resume stays paused. */
static int fail_setup(vm_monitor *m, sl_error *err) {
  SL_ERROR("monitor.setup_failed", "sandbox=%s error=\"%s: %s\"", m->args.id ? m->args.id : "?",
           sl_errname(err->code), err->msg);
  if (m->vm != NULL) {
    if (m->cfg.launch == SL_VM_LAUNCH_RESUME) sl_vm_kill(m->vm, NULL);
    else vm_remove_files(m->vm);
  }
  if (m->listen_fd >= 0) close(m->listen_fd);
  unlink(m->socket_path);
  sl_monitor_answer(&m->args.ready_fd, -1, err);
  return 1;
}

int sl_vm_monitor_main(int argc, char **argv) {
  vm_monitor m;
  sl_error err = {0};
  if (init(&m, argc, argv, &err) < 0 || launch(&m, &err) < 0) {
    int rc = fail_setup(&m, &err);
    sl_vm_close(m.vm);
    sl_sbstore_close(m.store);
    sl_vm_monitor_config_free(&m.cfg);
    return rc;
  }
  SL_INFO("monitor.ready", "sandbox=%s qemu_pid=%d launch=%s", m.args.id, (int)m.qemu_pid,
          sl_vm_launch_name(m.cfg.launch));
  sl_monitor_answer(&m.args.ready_fd, 0, NULL);
  run_loop(&m);
  finish(&m);
  sl_vm_close(m.vm);
  sl_sbstore_close(m.store);
  sl_vm_monitor_config_free(&m.cfg);
  return 0;
}
