/* Pause and rollback in place: the operations that end or replace PID 1
 * and so must run in the monitor, which otherwise takes the end of PID 1
 * for the end of the sandbox. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent_client.h"
#include "criu_tree.h"
#include "layer_copy.h"
#include "log.h"
#include "monitor.h"
#include "proc_init.h"
#include "proc_release.h"
#include "proc_util.h"
#include "snapshot.h"

#define QUIESCE_TIMEOUT_MS 5000
#define CRIU_TIMEOUT_MS 120000

static const char *freezer_dir(const sl_monitor *m) {
  const char *dir = m->cgroup.dirs[SL_CG_FREEZER];
  return dir[0] != '\0' ? dir : m->cgroup.dirs[SL_CG_UNIFIED];
}

/* Kill every process of the sandbox and reap PID 1, without ending the
 * monitor. */
static void stop_tree(sl_monitor *m) {
  if (m->init_pid > 0 && !m->init_done) kill(m->init_pid, SIGKILL);
  sl_error err = {0};
  if (sl_cgroup_kill_all(&m->cgroup, 10000, &err) < 0)
    SL_ERROR("monitor.kill_failed", "sandbox=%s error=\"%s\"", m->cfg.id, err.msg);
  if (!m->init_done) sl_monitor_reap_replaced(m);
  m->init_pid = 0;
}

/* Whether the sandbox's freezer cgroup is frozen (sandbox:freeze). */
static bool tree_frozen(const sl_monitor *m) {
  sl_freezer_state state = SL_FREEZER_THAWED;
  sl_error ignored = {0};
  return sl_freezer_get(freezer_dir(m), &state, &ignored) == 0 && state != SL_FREEZER_THAWED;
}

/* After a failed dump the tree runs on, quiesced: let new connections in
 * again, and freeze it again when it was frozen before. */
static void keep_after_failed_dump(sl_monitor *m, bool was_frozen) {
  sl_error err = {0};
  if (sl_agent_end_quiesce(m->init_pid, m->init_start, &err) < 0)
    SL_WARN("monitor.end_quiesce_failed", "sandbox=%s error=\"%s\"", m->cfg.id, err.msg);
  if (was_frozen && sl_freezer_freeze(freezer_dir(m), 10000, &err) < 0)
    SL_ERROR("monitor.refreeze_failed", "sandbox=%s error=\"%s\"", m->cfg.id, err.msg);
}

/* Quiesce the agent (CRIU cannot dump a socket connected to the host)
 * and dump the tree into `images`; CRIU kills the tree once the images
 * are written. A frozen tree is thawed for the quiesce, because a frozen
 * agent cannot reply to it. Its processes run until CRIU's pre-dump action
 * freezes them again. On failure the tree keeps running, or stays frozen
 * when it was. */
static int dump_for_pause(sl_monitor *m, const char *images, sl_error *err) {
  char socket[PATH_MAX + 32], work[PATH_MAX + 64];
  snprintf(socket, sizeof socket, "%s/%s", m->dir, SL_AGENT_SOCKET_HOST);
  snprintf(work, sizeof work, "%s/log/pause-%lld", m->dir, (long long)sl_now_ms());
  bool was_frozen = tree_frozen(m);
  int rc = was_frozen ? sl_freezer_thaw(freezer_dir(m), err) : 0;
  /* A hold left by a host that died during a snapshot would keep the
   * quiesce below waiting; with op.lock held, no other dump runs now. */
  sl_error ignored = {0};
  sl_agent_end_quiesce(m->init_pid, m->init_start, &ignored);
  if (rc == 0) rc = sl_agent_quiesce_hold(socket, QUIESCE_TIMEOUT_MS, SL_AGENT_DUMP_HOLD_MS, err);
  sl_criu_dump_result result;
  if (rc == 0) {
    sl_criu_dump_request req = {
        .init_pid = m->init_pid,
        .freezer_cgroup = freezer_dir(m),
        .images_dir = images,
        .work_dir = work,
        .leave_running = false,
        .keep_frozen = was_frozen,
        .timeout_ms = CRIU_TIMEOUT_MS,
    };
    rc = sl_criu_dump_tree(&req, &result, err);
  }
  if (rc < 0) {
    keep_after_failed_dump(m, was_frozen);
    return rc;
  }
  SL_INFO("monitor.dumped", "sandbox=%s ms=%.1f frozen_ms=%.1f", m->cfg.id, result.elapsed_ms,
          result.stats.frozen_time_us / 1000.0);
  return 0;
}

/* Unmount the root and the agent socket's bind and remove the cgroups:
 * a paused sandbox keeps nothing on the host but its folder. */
static int release_host(sl_monitor *m, sl_error *err) {
  sl_sandbox_info info;
  int rc = sl_sbstore_get(m->store, m->cfg.id, &info, err);
  if (rc < 0) return rc;
  sl_cgroup_format(&m->cgroup, info.cgroups, sizeof info.cgroups);
  info.init_pid = 0;
  return sl_proc_release_paused(&info, m->dir, err);
}

int sl_monitor_pause(sl_monitor *m, bool files_only, sl_error *err) {
  if (m->end_reason != NULL || m->init_done)
    return sl_error_set(err, ESRCH, "sandbox is ending: %s", m->cfg.id);
  char images[PATH_MAX + 16];
  snprintf(images, sizeof images, "%s/%s", m->dir, SL_PAUSE_DIR);
  sl_error ignored = {0};
  sl_layer_remove(images, &ignored); /* left by a pause whose resume failed before */
  if (!files_only) {
    int rc = dump_for_pause(m, images, err);
    if (rc < 0 && sl_pid_alive(m->init_pid, m->init_start)) return rc;
    if (rc < 0)
      SL_WARN("monitor.pause_lost_memory", "sandbox=%s error=\"%s\" note=\"the dump failed "
              "after the tree ended; keeping the files only\"", m->cfg.id, err->msg);
  }
  stop_tree(m);
  m->init_done = 1;
  m->paused = 1;
  sl_error sync_err = {0};
  if (sl_layer_sync(m->cfg.upper, &sync_err) < 0)
    SL_WARN("monitor.sync_failed", "sandbox=%s error=\"%s\"", m->cfg.id, sync_err.msg);

  /* Record the pause before releasing: a crash in between leaves a paused
   * sandbox with mounts, which gc releases. The deadline goes first, so a
   * reader that sees the state paused sees no deadline. */
  int rc = sl_sbstore_set_deadline(m->store, m->cfg.id, m->cfg.timeout_ms, 0, m->cfg.on_timeout,
                                   err);
  if (rc == 0) rc = sl_sbstore_set_state(m->store, m->cfg.id, SL_SANDBOX_PAUSED, err);
  sl_monitor_set_deadline(m, 0, &ignored);
  if (rc == 0) rc = release_host(m, err);
  if (rc < 0) {
    SL_ERROR("monitor.pause_record_failed", "sandbox=%s error=\"%s\"", m->cfg.id, err->msg);
    return rc;
  }
  SL_INFO("monitor.paused", "sandbox=%s files_only=%d", m->cfg.id, (int)files_only);
  return 0;
}

/* Rollback */

/* The overlay of the rolled-back sandbox: the agent layer the snapshot's
 * images were taken with (a filesystem-only snapshot boots the current
 * one), then the snapshot's layer stack. */
static int snapshot_lowers(sl_monitor *m, const sl_snapshot *sn, char ***lowers, size_t *count,
                           sl_error *err) {
  char agent[PATH_MAX];
  int rc = 0;
  if (sn->kind == SL_SNAPSHOT_FULL)
    rc = sl_snapshot_agent_layer(sl_sbstore_store(m->store), sn->id, agent, sizeof agent, err);
  else
    snprintf(agent, sizeof agent, "%s", m->cfg.lowers[0]);
  sl_layer_list stack = {0};
  if (rc == 0) rc = sl_catalog_layer_stack(sl_sbstore_catalog(m->store), sn->layer_id, &stack, err);
  *lowers = NULL;
  *count = 0;
  if (rc == 0 && sl_strv_push(lowers, count, agent) < 0) rc = -ENOMEM;
  for (size_t i = 0; rc == 0 && i < stack.count; i++)
    if (sl_strv_push(lowers, count, stack.items[i].path) < 0) rc = -ENOMEM;
  sl_layer_list_free(&stack);
  if (rc == -ENOMEM) sl_error_set(err, ENOMEM, "out of memory");
  if (rc < 0) sl_strv_free(*lowers);
  return rc;
}

/* Point the config at the snapshot: its layers, and its images for the
 * fork launcher (which then sets the sandbox's own hostname and fresh
 * entropy, and runs no on_fork). A later resume reads the same file. */
static int adopt_snapshot(sl_monitor *m, const sl_snapshot *sn, char **lowers, size_t count,
                          sl_error *err) {
  sl_strv_free(m->cfg.lowers);
  m->cfg.lowers = lowers;
  m->cfg.nlowers = count;
  free(m->cfg.images);
  free(m->cfg.on_fork);
  m->cfg.on_fork = NULL;
  m->cfg.images = sn->kind == SL_SNAPSHOT_FULL ? strdup(sn->image_dir) : NULL;
  if (sn->kind == SL_SNAPSHOT_FULL && m->cfg.images == NULL)
    return sl_error_set(err, ENOMEM, "out of memory");
  char path[PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/config", m->dir);
  return sl_proc_config_write(path, &m->cfg, err);
}

/* A fresh upper and work folder on the snapshot's layers. */
static int remount(sl_monitor *m, sl_error *err) {
  int rc = sl_unmount_below(m->dir, NULL, err);
  if (rc == 0) rc = sl_remove_tree(m->cfg.upper, err);
  if (rc == 0) rc = sl_remove_tree(m->cfg.work, err);
  if (rc == 0) rc = sl_monitor_mount_root(m, err);
  return rc;
}

static int replace_tree(sl_monitor *m, const sl_snapshot *sn, char **lowers, size_t count,
                        sl_error *err) {
  stop_tree(m);
  int rc = adopt_snapshot(m, sn, lowers, count, err);
  if (rc == 0) rc = remount(m, err);
  if (rc == 0) rc = sl_monitor_start_init(m, sn->kind == SL_SNAPSHOT_FULL ? "fork" : "fresh", err);
  if (rc == 0) rc = sl_catalog_sandbox_rebase(sl_sbstore_catalog(m->store), m->cfg.id, sn->id, err);
  if (rc == 0) rc = sl_monitor_record_running(m, err);
  return rc;
}

int sl_monitor_rollback(sl_monitor *m, const char *snapshot_id, sl_error *err) {
  if (m->end_reason != NULL || m->init_done)
    return sl_error_set(err, ESRCH, "sandbox is ending: %s", m->cfg.id);
  sl_snapshot sn = {0};
  char **lowers = NULL;
  size_t count = 0;
  int rc = sl_catalog_snapshot_get(sl_sbstore_catalog(m->store), snapshot_id, &sn, err);
  if (rc == 0) rc = snapshot_lowers(m, &sn, &lowers, &count, err);
  if (rc < 0) {
    sl_snapshot_clear(&sn);
    return rc; /* nothing changed yet: the tree keeps running */
  }
  SL_INFO("monitor.rollback", "sandbox=%s snapshot=%s kind=%s", m->cfg.id, sn.id,
          sl_snapshot_kind_name(sn.kind));
  rc = replace_tree(m, &sn, lowers, count, err);
  sl_snapshot_clear(&sn);
  if (rc < 0) {
    SL_ERROR("monitor.rollback_failed", "sandbox=%s error=\"%s\"", m->cfg.id, err->msg);
    sl_monitor_kill(m, "rollback_failed");
    if (m->init_pid > 0) sl_monitor_reap_replaced(m);
    m->init_done = 1;
    m->exit_status = -1;
    m->exit_signal = SIGKILL;
  }
  return rc;
}
