/* Dump and restore of a sandbox's process tree, and the freezer cgroup. */
#include "criu_tree.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "criu_action.h"
#include "criu_tmpfs.h"
#include "layer_copy.h"
#include "log.h"

#define DEFAULT_GHOST_LIMIT (64u << 20)
/* The pre-dump action has frozen the tree with no task in a vfork wait,
 * so seizing takes milliseconds. A task that still cannot be seized fails
 * the dump after these seconds instead of CRIU's 10, during which the
 * tree stays frozen. */
#define FREEZE_TIMEOUT_S 3

/* The sandbox's network namespace is external to the images: a restore
 * gets a new, empty one (loopback up) from the process that runs CRIU,
 * passed as this descriptor. That needs no action script on restore, and
 * CRIU execs the script once per action (seven times per restore). */
#define NET_NS_KEY "sandlot-net"
#define NET_NS_FD 200
#define SL_STRINGIFY_(x) #x
#define SL_STRINGIFY(x) SL_STRINGIFY_(x)


static int make_dir(const char *path, bool must_be_new, sl_error *err) {
  if (mkdir(path, 0700) == 0) return 0;
  if (errno == EEXIST && !must_be_new) return 0;
  return sl_error_errno(err, errno, "cannot create %s", path);
}

static int check_dump_request(const sl_criu_dump_request *req, sl_error *err) {
  if (req->init_pid <= 0) return sl_error_set(err, EINVAL, "invalid pid %d", (int)req->init_pid);
  if (req->freezer_cgroup == NULL || req->images_dir == NULL || req->work_dir == NULL)
    return sl_error_set(err, EINVAL, "dump needs a freezer cgroup, an images and a work dir");
  if ((req->upper_dir == NULL) != (req->layer_dir == NULL))
    return sl_error_set(err, EINVAL, "capturing the upper layer needs both its dir and a layer dir");
  if (kill(req->init_pid, 0) < 0 && errno == ESRCH)
    return sl_error_set(err, ESRCH, "no process %d to dump", (int)req->init_pid);
  return 0;
}

/* The sandbox's tmpfs mounts are external too (core/criu_tmpfs.h). */
static sl_criu_opts dump_opts(const sl_criu_dump_request *req, const char *action,
                              const char *net_external, const sl_criu_tmpfs *tmpfs) {
  sl_criu_opts opts = {
      .command = SL_CRIU_DUMP,
      .images_dir = req->images_dir,
      .work_dir = req->work_dir,
      .log_level = req->log_level,
      .pid = req->init_pid,
      .leave_running = req->leave_running,
      .freeze_cgroup = req->freezer_cgroup,
      .network_lock = SL_CRIU_NETLOCK_SKIP,
      .manage_cgroups = SL_CRIU_CGROUPS_IGNORE,
      .file_locks = true,
      .tcp_established = true,
      .ghost_limit = req->ghost_limit ? req->ghost_limit : DEFAULT_GHOST_LIMIT,
      .freeze_timeout_s = FREEZE_TIMEOUT_S,
      .action_script = action,
      .external = {net_external},
  };
  for (size_t i = 0; i < tmpfs->count && i + 1 < SL_CRIU_MAX_EXTERNAL; i++)
    opts.external[i + 1] = tmpfs->externals[i];
  return opts;
}

/* "net[INODE]:sandlot-net" for the network namespace of `pid`. */
static int net_external_spec(pid_t pid, char *buf, size_t size, sl_error *err) {
  char path[64];
  struct stat st;
  snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
  if (stat(path, &st) < 0) return sl_error_errno(err, errno, "cannot stat %s", path);
  snprintf(buf, size, "net[%lu]:%s", (unsigned long)st.st_ino, NET_NS_KEY);
  return 0;
}

/* Thaw the tree after CRIU exits. After a successful dump a thaw failure
 * fails the dump (`err` set). After a failed dump it is only logged,
 * because the dump's own error is the one to report. */
static void thaw_after_dump(const sl_criu_dump_request *req, sl_error *err, int *rc) {
  sl_error local = {0};
  if (sl_freezer_thaw(req->freezer_cgroup, err ? err : &local) == 0) return;
  if (err != NULL)
    *rc = -err->code;
  else
    SL_ERROR("criu.thaw_failed", "cgroup=%s error=\"%s\"", req->freezer_cgroup, local.msg);
}

static void remove_partial_dump(const sl_criu_dump_request *req) {
  sl_error err = {0};
  if (sl_layer_remove(req->images_dir, &err) < 0)
    SL_ERROR("criu.cleanup_failed", "path=%s error=\"%s\"", req->images_dir, err.msg);
  if (req->layer_dir != NULL && sl_layer_remove(req->layer_dir, &err) < 0)
    SL_ERROR("criu.cleanup_failed", "path=%s error=\"%s\"", req->layer_dir, err.msg);
}

/* Flush the images and the layer before anyone records them as a
 * snapshot; the tree already runs again at this point. */
static int sync_dump(const sl_criu_dump_request *req, sl_error *err) {
  int rc = sl_layer_sync(req->images_dir, err);
  if (rc == 0 && req->layer_dir != NULL) rc = sl_layer_sync(req->layer_dir, err);
  return rc;
}

static void read_stats(const char *work_dir, const char *name, sl_criu_stats *stats) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", work_dir, name);
  sl_error err = {0};
  if (sl_criu_read_stats(path, stats, &err) < 0) {
    memset(stats, 0, sizeof *stats);
    SL_DEBUG("criu.stats_unreadable", "path=%s error=\"%s\"", path, err.msg);
  }
}

int sl_criu_dump_tree(const sl_criu_dump_request *req, sl_criu_dump_result *result,
                      sl_error *err) {
  sl_criu_dump_result local;
  sl_criu_dump_result *res = result ? result : &local;
  memset(res, 0, sizeof *res);
  int rc = check_dump_request(req, err);
  if (rc == 0) rc = make_dir(req->work_dir, false, err);
  if (rc == 0) rc = make_dir(req->images_dir, true, err);
  if (rc < 0) return rc;

  char action[4096], freeze_env[4200], upper_env[4200], layer_env[4200], net[96];
  char root_env[64], keys_env[300], tmpfs_to_env[4200];
  const char *env[6];
  sl_criu_tmpfs tmpfs;
  sl_criu_exec exec = {.timeout_ms = req->timeout_ms, .env = env};
  rc = sl_criu_action_path(action, sizeof action, err);
  if (rc == 0) rc = net_external_spec(req->init_pid, net, sizeof net, err);
  if (rc == 0) rc = sl_criu_tmpfs_for_dump(req->init_pid, &tmpfs, err);
  snprintf(freeze_env, sizeof freeze_env, "SANDLOT_FREEZE_CGROUP=%s", req->freezer_cgroup);
  env[exec.env_count++] = freeze_env;
  snprintf(root_env, sizeof root_env, "SANDLOT_CAPTURE_ROOT=/proc/%d/root", (int)req->init_pid);
  snprintf(keys_env, sizeof keys_env, "SANDLOT_CAPTURE_TMPFS=%s", rc == 0 ? tmpfs.keys : "");
  snprintf(tmpfs_to_env, sizeof tmpfs_to_env, "SANDLOT_CAPTURE_TMPFS_TO=%s", req->images_dir);
  env[exec.env_count++] = root_env;
  env[exec.env_count++] = keys_env;
  env[exec.env_count++] = tmpfs_to_env;
  if (req->upper_dir != NULL) {
    snprintf(upper_env, sizeof upper_env, "SANDLOT_CAPTURE_UPPER=%s", req->upper_dir);
    snprintf(layer_env, sizeof layer_env, "SANDLOT_CAPTURE_LAYER=%s", req->layer_dir);
    env[exec.env_count++] = upper_env;
    env[exec.env_count++] = layer_env;
  }
  sl_criu_result run = {0};
  if (rc == 0) {
    sl_criu_opts opts = dump_opts(req, action, net, &tmpfs);
    rc = sl_criu_run(&opts, &exec, &run, err);
  }
  res->elapsed_ms = run.elapsed_ms;
  /* The pre-dump action froze the cgroup, so CRIU restored it FROZEN. A
   * pause whose dump failed must keep its tree running too; after a
   * successful pause the cgroup is empty and thawing it changes nothing. */
  if (!req->keep_frozen) thaw_after_dump(req, rc < 0 ? NULL : err, &rc);
  if (rc == 0 && req->layer_dir != NULL && access(req->layer_dir, F_OK) < 0)
    rc = sl_error_set(err, EIO, "the post-dump action did not create %s", req->layer_dir);
  if (rc == 0) rc = sync_dump(req, err);
  if (rc < 0) {
    remove_partial_dump(req);
    return sl_error_wrap(err, "dump of pid %d", (int)req->init_pid);
  }
  read_stats(req->work_dir, "stats-dump", &res->stats);
  return 0;
}

static int read_pidfile(const char *path, pid_t *pid, sl_error *err) {
  FILE *f = fopen(path, "re");
  if (f == NULL) return sl_error_errno(err, errno, "cannot open %s", path);
  int value = 0;
  int n = fscanf(f, "%d", &value);
  fclose(f);
  if (n != 1 || value <= 0) return sl_error_set(err, EIO, "invalid pid in %s", path);
  *pid = value;
  return 0;
}

/* Start `criu lazy-pages -d` with the restore's work directory; it
 * serves the pages of `images_dir` until the tree has them all. */
static int start_lazy_pages(const sl_criu_restore_request *req, sl_error *err) {
  char pidfile[4200];
  snprintf(pidfile, sizeof pidfile, "%s/lazy-pages.pid", req->work_dir);
  sl_criu_opts opts = {
      .command = SL_CRIU_LAZY_PAGES,
      .images_dir = req->images_dir,
      .work_dir = req->work_dir,
      .pidfile = pidfile,
      .log_level = req->log_level,
  };
  sl_criu_exec exec = {.timeout_ms = req->timeout_ms};
  return sl_criu_run(&opts, &exec, NULL, err);
}

static void stop_lazy_pages(const sl_criu_restore_request *req) {
  char pidfile[4200];
  snprintf(pidfile, sizeof pidfile, "%s/lazy-pages.pid", req->work_dir);
  pid_t pid;
  sl_error err = {0};
  if (read_pidfile(pidfile, &pid, &err) == 0) kill(pid, SIGKILL);
}

void sl_cgroup_kill_tasks(const char *procs) {
  for (int round = 0; round < 1000; round++) {
    FILE *f = fopen(procs, "re");
    if (f == NULL) return;
    int pid, count = 0;
    while (fscanf(f, "%d", &pid) == 1) {
      kill(pid, SIGKILL);
      count++;
    }
    fclose(f);
    if (count == 0) return;
    usleep(5000);
  }
  SL_ERROR("criu.tasks_left", "procs=%s", procs);
}

int sl_criu_restore_tree(const sl_criu_restore_request *req, sl_criu_restore_result *result,
                         sl_error *err) {
  sl_criu_restore_result local;
  sl_criu_restore_result *res = result ? result : &local;
  memset(res, 0, sizeof *res);
  if (req->images_dir == NULL || req->work_dir == NULL || req->root == NULL)
    return sl_error_set(err, EINVAL, "restore needs an images dir, a work dir and a root");
  char pidfile[4200];
  sl_criu_tmpfs tmpfs;
  int rc = make_dir(req->work_dir, false, err);
  if (rc == 0 && access(req->images_dir, F_OK) < 0)
    rc = sl_error_errno(err, errno, "cannot open the images %s", req->images_dir);
  if (rc == 0) rc = sl_criu_tmpfs_for_restore(req->images_dir, req->work_dir, &tmpfs, err);
  if (rc < 0) return sl_error_wrap(err, "restore from %s", req->images_dir);
  snprintf(pidfile, sizeof pidfile, "%s/restore.pid", req->work_dir);

  if (req->lazy_pages) rc = start_lazy_pages(req, err);
  sl_criu_opts opts = {
      .command = SL_CRIU_RESTORE,
      .images_dir = req->images_dir,
      .work_dir = req->work_dir,
      .log_level = req->log_level,
      .root = req->root,
      .detach = true,
      .pidfile = pidfile,
      .lazy_pages = req->lazy_pages,
      .manage_cgroups = SL_CRIU_CGROUPS_IGNORE,
      .file_locks = true,
      .tcp_established = true,
      .inherit_fds = {"fd[" SL_STRINGIFY(NET_NS_FD) "]:" NET_NS_KEY},
  };
  for (size_t i = 0; i < tmpfs.count && i < SL_CRIU_MAX_EXTERNAL; i++)
    opts.external[i] = tmpfs.externals[i];
  sl_criu_exec exec = {
      .timeout_ms = req->timeout_ms,
      .join_cgroups = req->cgroup_procs,
      .join_cgroup_count = req->cgroup_count,
      .net_ns_fd = NET_NS_FD,
  };
  sl_criu_result run = {0};
  if (rc == 0) rc = sl_criu_run(&opts, &exec, &run, err);
  res->elapsed_ms = run.elapsed_ms;
  sl_criu_tmpfs_release(&tmpfs);
  if (rc == 0) rc = read_pidfile(pidfile, &res->init_pid, err);
  if (rc < 0) {
    if (req->lazy_pages) stop_lazy_pages(req);
    if (req->cgroup_count > 0) sl_cgroup_kill_tasks(req->cgroup_procs[0]);
    return sl_error_wrap(err, "restore from %s", req->images_dir);
  }
  read_stats(req->work_dir, "stats-restore", &res->stats);
  return 0;
}
