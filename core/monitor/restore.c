/* The launchers that restore PID 1 from CRIU images: "fork" (a new
 * sandbox from a snapshot, or a rollback in place) and "resume" (a
 * paused sandbox). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent_client.h"
#include "criu_tree.h"
#include "log.h"
#include "monitor.h"
#include "proc_util.h"
#include "snapshot.h"

#define CRIU_TIMEOUT_MS 120000

/* The cgroup.procs files of the sandbox, which the CRIU process joins
 * before it restores, so the tree starts inside the sandbox's limits. */
typedef struct cgroup_procs {
  char paths[SL_CG_COUNT][SL_CGROUP_PATH_MAX + 16];
  const char *list[SL_CG_COUNT];
  size_t count;
} cgroup_procs;

static void list_cgroup_procs(const sl_monitor *m, cgroup_procs *out) {
  out->count = 0;
  /* The freezer (or the unified cgroup) comes first: a failed restore
   * kills what is left in the first one. */
  static const sl_cgroup_controller order[] = {SL_CG_FREEZER, SL_CG_UNIFIED, SL_CG_MEMORY,
                                               SL_CG_PIDS,    SL_CG_CPU,     SL_CG_DEVICES};
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
    const char *dir = m->cgroup.dirs[order[i]];
    if (dir[0] == '\0') continue;
    snprintf(out->paths[out->count], sizeof out->paths[0], "%s/cgroup.procs", dir);
    out->list[out->count] = out->paths[out->count];
    out->count++;
  }
}

/* A work directory of its own for each restore: sandboxes/<id>/log/
 * <what>-<ms>, where CRIU's log, output and stats stay. */
static void restore_work_dir(const sl_monitor *m, const char *what, char *buf, size_t len) {
  snprintf(buf, len, "%s/log/%s-%lld", m->dir, what, (long long)sl_now_ms());
}

/* Kill what a launcher restored and reap its PID 1. */
static void kill_restored(sl_monitor *m, pid_t pid) {
  sl_error err = {0};
  if (sl_cgroup_kill_all(&m->cgroup, 10000, &err) < 0)
    SL_ERROR("monitor.kill_failed", "sandbox=%s error=\"%s\"", m->cfg.id, err.msg);
  if (pid > 0) waitpid(pid, NULL, 0);
}

int sl_monitor_launch_fork(sl_monitor *m, pid_t *init_pid, sl_error *err) {
  if (m->cfg.images == NULL) return sl_error_set(err, EINVAL, "fork without images in the config");
  cgroup_procs procs;
  list_cgroup_procs(m, &procs);
  char work[PATH_MAX + 64];
  restore_work_dir(m, "fork", work, sizeof work);
  sl_fork_launch launch = {
      .images_dir = m->cfg.images,
      .root = m->cfg.root,
      .cgroup_procs = procs.list,
      .cgroup_count = procs.count,
      .work_dir = work,
      .hostname = m->cfg.hostname,
      .on_fork = m->cfg.on_fork,
      .timeout_ms = CRIU_TIMEOUT_MS,
  };
  sl_fork_result result;
  if (sl_snapshot_launch_fork(&launch, &result, err) < 0) return -err->code;
  SL_INFO("monitor.forked", "sandbox=%s init_pid=%d restore_ms=%.1f hooks_ms=%.1f", m->cfg.id,
          (int)result.init_pid, result.restore_ms, result.hooks_ms);
  if (result.on_fork_exit != 0) {
    kill_restored(m, result.init_pid);
    return sl_error_set(err, EIO, "on_fork command failed with exit status %d: %s",
                        result.on_fork_exit, m->cfg.on_fork);
  }
  *init_pid = result.init_pid;
  return 0;
}

int sl_monitor_launch_resume(sl_monitor *m, pid_t *init_pid, sl_error *err) {
  if (m->cfg.images == NULL)
    return sl_error_set(err, EINVAL, "resume without images in the config");
  cgroup_procs procs;
  list_cgroup_procs(m, &procs);
  char work[PATH_MAX + 64];
  restore_work_dir(m, "resume", work, sizeof work);
  sl_criu_restore_request req = {
      .images_dir = m->cfg.images,
      .work_dir = work,
      .root = m->cfg.root,
      .cgroup_procs = procs.list,
      .cgroup_count = procs.count,
      .timeout_ms = CRIU_TIMEOUT_MS,
  };
  sl_criu_restore_result result;
  if (sl_criu_restore_tree(&req, &result, err) < 0) return -err->code;
  /* The agent was quiesced for the dump and leaves new connections
   * waiting until it gets this signal. */
  if (sl_agent_end_quiesce(result.init_pid, 0, err) < 0) {
    kill_restored(m, result.init_pid);
    return -err->code;
  }
  SL_INFO("monitor.resumed", "sandbox=%s init_pid=%d restore_ms=%.1f", m->cfg.id,
          (int)result.init_pid, result.elapsed_ms);
  *init_pid = result.init_pid;
  return 0;
}
