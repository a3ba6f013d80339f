/* Snapshots, pause, resume and rollback of process sandboxes, as seen
 * from the caller. A snapshot is taken here (the tree keeps running, so
 * its monitor need not know). Pause and rollback end or replace PID 1,
 * so the monitor does them on request; resume starts a new monitor. The
 * caller of every function holds the sandbox's op.lock. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "monitor_client.h"
#include "proc_config.h"
#include "proc_internal.h"
#include "proc_release.h"
#include "proc_util.h"
#include "sandbox_store.h"

/* A pause or rollback runs CRIU (120 s at most each) and the agent's
 * hooks inside the monitor before it replies. */
#define LONG_REQUEST_TIMEOUT_MS 300000

static int read_config(sl_sandboxes *h, const char *id, sl_proc_config *cfg, char *path,
                       size_t len, sl_error *err) {
  char dir[SL_SANDBOX_PATH_MAX];
  sl_sandbox_dir(h, id, dir, sizeof dir);
  snprintf(path, len, "%s/config", dir);
  return sl_proc_config_read(path, cfg, err);
}

int sl_proc_snapshot(sl_sandboxes *h, const sl_sandbox_info *info, const sl_snapshot_opts *opts,
                     sl_snapshot *out, sl_snapshot_timing *timing, sl_error *err) {
  sl_proc_config cfg;
  char path[SL_SANDBOX_PATH_MAX + 16];
  if (read_config(h, info->id, &cfg, path, sizeof path, err) < 0) return -err->code;
  char *labels = opts->labels ? sl_labels_json(opts->labels) : NULL;
  int rc = opts->labels && labels == NULL ? sl_error_set(err, ENOMEM, "out of memory") : 0;
  sl_snapshot_request req = {
      .sandbox_id = info->id,
      .name = opts->name,
      .tag = opts->tag,
      .labels = labels,
      .memory = !opts->files_only,
      .lock_held = true,
      .agent_layer = cfg.lowers[0], /* the agent's layer is the top lower */
  };
  if (rc == 0)
    rc = sl_snapshot_take(sl_sbstore_catalog(h->store), sl_sbstore_store(h->store), &req, out,
                          timing, err);
  free(labels);
  sl_proc_config_free(&cfg);
  return rc;
}

/* Send `request` to the sandbox's monitor and wait for its reply. */
static int ask_monitor(sl_sandboxes *h, const sl_sandbox_info *info, const char *request,
                       pid_t *monitor, sl_error *err) {
  *monitor = sl_proc_live_monitor(h, info);
  if (*monitor <= 0) return sl_error_set(err, ESRCH, "monitor of %s is gone (run gc)", info->id);
  char sock[SL_SANDBOX_PATH_MAX + 16];
  sl_proc_monitor_socket(h, info->id, sock, sizeof sock);
  return sl_monitor_request(sock, request, LONG_REQUEST_TIMEOUT_MS, NULL, 0, err);
}

int sl_proc_pause(sl_sandboxes *h, const sl_sandbox_info *info, bool files_only, sl_error *err) {
  pid_t monitor;
  int rc = ask_monitor(h, info, files_only ? "pause files" : "pause", &monitor, err);
  /* The monitor exits right after its reply. */
  if (rc == 0) sl_proc_wait_exit(monitor, 5000);
  return rc;
}

/* Whether the pause left CRIU images (a files-only pause leaves none). */
static bool has_pause_images(sl_sandboxes *h, const char *id) {
  char dir[SL_SANDBOX_PATH_MAX], path[SL_SANDBOX_PATH_MAX + 64];
  sl_sandbox_dir(h, id, dir, sizeof dir);
  snprintf(path, sizeof path, "%s/%s/inventory.img", dir, SL_PAUSE_DIR);
  return access(path, F_OK) == 0;
}

/* A resume starts a new monitor for the same id on the config written
 * at creation, because the layers and limits are unchanged. The config
 * now asks for a restore of the pause's images, or for a fresh agent
 * after a files-only pause. The timeout and its action come from the
 * row, which set_timeout may have changed while the sandbox was paused. */
int sl_proc_resume(sl_sandboxes *h, const sl_sandbox_info *info, sl_error *err) {
  sl_proc_config cfg;
  char path[SL_SANDBOX_PATH_MAX + 16], dir[SL_SANDBOX_PATH_MAX], images[SL_SANDBOX_PATH_MAX + 16];
  if (read_config(h, info->id, &cfg, path, sizeof path, err) < 0) return -err->code;
  sl_sandbox_dir(h, info->id, dir, sizeof dir);
  snprintf(images, sizeof images, "%s/%s", dir, SL_PAUSE_DIR);
  bool restore = has_pause_images(h, info->id);

  free(cfg.launch);
  free(cfg.images);
  cfg.launch = strdup(restore ? "resume" : "fresh");
  cfg.images = restore ? strdup(images) : NULL;
  cfg.resume = 1;
  cfg.timeout_ms = info->timeout_ms;
  cfg.on_timeout = info->on_timeout;
  int rc = cfg.launch == NULL || (restore && cfg.images == NULL)
               ? sl_error_set(err, ENOMEM, "out of memory")
               : sl_proc_config_write(path, &cfg, err);
  sl_proc_config_free(&cfg);

  if (rc == 0) rc = sl_proc_start_monitor(h, info->id, info->auto_kill, err);
  if (rc < 0) {
    /* The monitor releases what it made before it reports, then exits;
     * this covers a monitor that died first. The files and images stay. */
    pid_t monitor = sl_monitor_find(h->home, info->id);
    if (monitor > 0) sl_proc_wait_exit(monitor, 5000);
    sl_error ignored = {0};
    sl_proc_release_paused(info, dir, &ignored);
    /* sl_sandbox_locked adds "resume" and the id. */
    return sl_error_wrap(err, "sandbox stays paused");
  }
  SL_INFO("sandbox.resumed", "sandbox=%s op=resume launch=%s", info->id,
          restore ? "resume" : "fresh");
  return 0;
}

int sl_proc_rollback(sl_sandboxes *h, const sl_sandbox_info *info, const sl_snapshot *snapshot,
                     sl_error *err) {
  char request[64];
  snprintf(request, sizeof request, "rollback %s", snapshot->id);
  pid_t monitor;
  return ask_monitor(h, info, request, &monitor, err);
}

int sl_proc_snapshot_delete(sl_sandboxes *h, const sl_snapshot *snapshot, sl_error *err) {
  return sl_snapshot_remove(sl_sbstore_catalog(h->store), sl_sbstore_store(h->store),
                            snapshot->id, err);
}
