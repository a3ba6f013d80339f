/* Checkpoint and restore of one sandbox's process tree with CRIU, and the
 * freezer cgroup operations around them.
 *
 * These functions know paths and pids, not catalog rows: the snapshot
 * engine decides where images and layers go, and the monitor of the
 * target sandbox calls sl_criu_restore_tree() so the restored PID 1
 * becomes its child (it must be a subreaper). The options follow the
 * recipe in docs/ARCHITECTURE.md (Snapshots). All calls block. */
#ifndef SANDLOT_CRIU_TREE_H
#define SANDLOT_CRIU_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "criu.h"
#include "error.h"
#include "freezer.h"

/* Kill every task listed in the cgroup.procs file `procs` until none is
 * left (at most about 5 s). After a failed or timed-out restore these are
 * CRIU itself and the tasks it had created: they all joined the new
 * sandbox's cgroups. */
void sl_cgroup_kill_tasks(const char *procs);

typedef struct sl_criu_dump_request {
  pid_t init_pid;             /* host pid of the sandbox's PID 1 */
  const char *freezer_cgroup; /* the sandbox's freezer cgroup directory */
  const char *images_dir;     /* created; must not exist */
  const char *work_dir;       /* created if missing: logs, stats-dump, criu.out */
  const char *upper_dir;      /* the sandbox's overlay upper, or NULL for no capture */
  const char *layer_dir;      /* the capture's destination; must not exist */
  bool leave_running;         /* false: CRIU kills the tree after the dump (pause) */
  bool keep_frozen;           /* the tree was frozen before: leave it frozen */
  size_t ghost_limit;         /* bytes of deleted-but-open files kept; 0: 64 MiB */
  int timeout_ms;             /* <= 0: no timeout */
  int log_level;              /* CRIU -v level; 0: CRIU's default */
} sl_criu_dump_request;

typedef struct sl_criu_dump_result {
  double elapsed_ms;  /* CRIU's run, capture included */
  sl_criu_stats stats; /* from stats-dump; has_dump false when unreadable */
} sl_criu_dump_result;

/* Dump the tree rooted at `init_pid`, capturing `upper_dir` into
 * `layer_dir` while the tree is frozen. On failure removes the images and
 * the partial layer, and makes sure the freezer cgroup is left thawed
 * when the tree is to keep running. */
int sl_criu_dump_tree(const sl_criu_dump_request *req, sl_criu_dump_result *result,
                      sl_error *err);

typedef struct sl_criu_restore_request {
  const char *images_dir;
  const char *work_dir;   /* created if missing; one per restore */
  const char *root;       /* the new sandbox's overlay mount point */
  /* cgroup.procs files of the new sandbox; CRIU joins them before it
   * restores, so the tree starts there (--manage-cgroups=ignore). */
  const char *const *cgroup_procs;
  size_t cgroup_count;
  bool lazy_pages;        /* start a lazy-pages daemon and restore lazily */
  int timeout_ms;
  int log_level;
} sl_criu_restore_request;

typedef struct sl_criu_restore_result {
  pid_t init_pid;         /* host pid of the restored PID 1 */
  double elapsed_ms;
  sl_criu_stats stats;    /* from stats-restore */
} sl_criu_restore_result;

/* Restore a tree from `images_dir` with `criu restore -d`. Call it from
 * the process that should become the restored PID 1's parent, marked as a
 * child subreaper: CRIU exits once the tree runs and the tree is
 * reparented to that process. On failure, including a timeout, every
 * task in the first of `cgroup_procs` is killed, so a partly restored
 * tree never keeps running. */
int sl_criu_restore_tree(const sl_criu_restore_request *req, sl_criu_restore_result *result,
                         sl_error *err);

#endif
