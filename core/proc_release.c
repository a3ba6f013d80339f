#include "proc_release.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "proc_cgroup.h"
#include "proc_init.h"
#include "proc_overlay.h"
#include "proc_util.h"
#include "template.h"

static char *read_mountinfo(void) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (f == NULL) return NULL;
  size_t cap = 1 << 20;
  char *text = malloc(cap);
  if (text) text[fread(text, 1, cap - 1, f)] = '\0';
  fclose(f);
  return text;
}

int sl_unmount_below(const char *prefix, int *count, sl_error *err) {
  if (count) *count = 0;
  char *mountinfo = read_mountinfo();
  if (mountinfo == NULL) return sl_error_errno(err, errno, "read /proc/self/mountinfo");
  size_t n = 0;
  char **mounts = sl_mounts_below(mountinfo, prefix, &n);
  free(mountinfo);
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    if (sl_overlay_unmount(mounts[i], err) < 0 && rc == 0) rc = -err->code;
    else if (count) (*count)++;
  }
  sl_strv_free(mounts);
  return rc;
}

static void keep_first(int *rc, int step_rc) {
  if (*rc == 0 && step_rc < 0) *rc = step_rc;
}

static int kill_processes(const sl_sandbox_info *info, const sl_cgroup *cg, sl_error *err) {
  int rc = 0;
  if (info->init_pid > 0 && sl_pid_alive(info->init_pid, info->init_start)) {
    /* SIGKILL to PID 1 of a PID namespace ends every process in it. */
    kill(info->init_pid, SIGKILL);
  }
  if (sl_cgroup_exists(cg)) rc = sl_cgroup_kill_all(cg, 10000, err);
  return rc;
}

/* Kill, unmount, remove the cgroups, the agent socket's mount point and
 * the root mount point; what a running sandbox holds on the host. */
static int release_host(const sl_sandbox_info *info, const char *sandbox_dir, sl_error *err) {
  sl_cgroup cg;
  int rc = 0;
  if (sl_cgroup_parse(info->cgroups, &cg, err) < 0) return -err->code;

  keep_first(&rc, kill_processes(info, &cg, err));
  int unmounted = 0;
  keep_first(&rc, sl_unmount_below(sandbox_dir, &unmounted, err));
  keep_first(&rc, sl_cgroup_destroy(&cg, err));

  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", sandbox_dir, SL_AGENT_SOCKET_HOST);
  if (unlink(path) < 0 && errno != ENOENT && rc == 0)
    rc = sl_error_errno(err, errno, "remove %s", path);
  snprintf(path, sizeof path, "%s/root", sandbox_dir);
  keep_first(&rc, sl_remove_tree(path, err));
  SL_DEBUG("proc.released", "sandbox=%s unmounted=%d rc=%d", info->id, unmounted, rc);
  return rc;
}

int sl_proc_release_paused(const sl_sandbox_info *info, const char *sandbox_dir, sl_error *err) {
  return release_host(info, sandbox_dir, err);
}

int sl_proc_release(const sl_sandbox_info *info, const char *sandbox_dir, sl_error *err) {
  int rc = release_host(info, sandbox_dir, err);
  static const char *const dirs[] = {"upper", "work", SL_PAUSE_DIR};
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", sandbox_dir, dirs[i]);
    keep_first(&rc, sl_remove_tree(path, err));
  }
  return rc;
}
