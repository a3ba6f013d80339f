/* The snapshot engine for process sandboxes: take, delete and clean up
 * snapshots recorded in the catalog.
 *
 * A snapshot is "full" (CRIU images of the process tree plus the overlay
 * upper layer, captured at one frozen instant) or "fs" (the upper layer
 * alone, taken while the tree is frozen). The captured upper becomes the
 * snapshot's immutable layer, stacked on the sandbox's base layer.
 *
 * Crash safety: the catalog row is "pending" while the files are made and
 * becomes visible only when sl_catalog_snapshot_commit() runs after the
 * files are synced. A host that dies in between leaves a pending row, its
 * partial folders and possibly a frozen sandbox. sl_snapshot_gc() removes
 * the first two and sl_sandbox_gc() thaws the third, each once the
 * sandbox's op.lock is free.
 *
 * Every call blocks; run it on a thread or in a child process. */
#ifndef SANDLOT_SNAPSHOT_H
#define SANDLOT_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "catalog.h"
#include "error.h"
#include "store.h"

typedef struct sl_snapshot_request {
  const char *sandbox_id; /* required */
  const char *name;       /* NULL or a snapshot name */
  const char *tag;        /* NULL or a tag (needs a name) */
  const char *labels;     /* NULL or a JSON object of strings */
  bool memory;            /* true: full snapshot; false: filesystem only */
  int lock_timeout_ms;    /* 0: fail with EBUSY at once when another
                             operation holds the sandbox; > 0: wait */
  bool lock_held;         /* the caller holds the sandbox's op.lock */
  /* Process sandboxes: the agent layer the tree runs from. A fork must
   * mount the same agent binary its images map, so this path goes to
   * snapshots/<sn>/agent_layer (see sl_snapshot_agent_layer). */
  const char *agent_layer;
  int64_t expires_at;     /* ms since the epoch; 0: never */
  int timeout_ms;         /* for CRIU; 0: 120 s */
} sl_snapshot_request;

/* What a snapshot took, besides its catalog row. */
typedef struct sl_snapshot_timing {
  double total_ms;        /* the whole call, lock and catalog included */
  double dump_ms;         /* CRIU, or freeze, copy and thaw for "fs" */
  double frozen_ms;       /* CRIU's frozen time; 0 for "fs" */
} sl_snapshot_timing;

/* Take a snapshot of a running (or frozen) sandbox. `out` (may be NULL)
 * receives the ready row; release it with sl_snapshot_clear(). Fails with
 * ENOENT (unknown sandbox), ESRCH (sandbox dead or without processes),
 * EBUSY (another operation has its op.lock, it is still being created,
 * or it is paused), EINVAL (bad name, tag or labels), or EIO with CRIU's
 * error lines. The message does not name the operation: the caller adds
 * it. On failure no snapshot, directory or layer is left and
 * the sandbox keeps running. */
int sl_snapshot_take(sl_catalog *cat, const sl_store *store, const sl_snapshot_request *req,
                     sl_snapshot *out, sl_snapshot_timing *timing, sl_error *err);

/* Delete snapshot `ref` (an id, "name:tag" or "name") and remove the
 * folders of the layers this left unused. A layer that a running fork
 * still mounts stays until sl_catalog_layer_collect() finds it unused.
 * Fails with ENOENT for an unknown or already deleted snapshot. */
int sl_snapshot_remove(sl_catalog *cat, const sl_store *store, const char *ref, sl_error *err);

/* Clean up after crashed takes and deletes: delete pending snapshots
 * older than `older_than_ms` whose sandbox's op.lock is free (with their
 * folders), and remove snapshots/<sn>/ folders that no row names, unless
 * their sandbox's op.lock is held (a take in progress). A folder without
 * a readable source file goes only once it is older than `older_than_ms`.
 * `cleaned` (may be NULL) receives the number of snapshots and folders
 * removed. A sandbox left frozen by a crashed take is thawed by
 * sl_sandbox_gc(), which dispatches on its backend. */
int sl_snapshot_gc(sl_catalog *cat, const sl_store *store, int64_t older_than_ms, int *cleaned,
                   sl_error *err);

/* Write the agent layer recorded for snapshot `snapshot_id` (see
 * sl_snapshot_request.agent_layer) to `buf`. ENOENT when none was. */
int sl_snapshot_agent_layer(const sl_store *store, const char *snapshot_id, char *buf,
                            size_t size, sl_error *err);

/* The lower layers of a fork of `snapshot`, top first, as an overlay
 * lowerdir value ("layers/ly-b:layers/ly-a"). Fails with EINVAL for a
 * filesystem-only snapshot (boot a fresh sandbox on its layer instead),
 * ENOENT for an unknown snapshot and ENAMETOOLONG when it does not fit. */
int sl_snapshot_lowerdirs(sl_catalog *cat, const char *snapshot_ref, char *buf, size_t size,
                          sl_error *err);

/* What the monitor of a new fork passes to sl_snapshot_launch_fork(). The
 * monitor has created the fork's cgroups and mounted its overlay (a fresh
 * upper over sl_snapshot_lowerdirs()) at `root`. */
typedef struct sl_fork_launch {
  const char *images_dir;          /* the snapshot's image_dir */
  const char *root;                /* the fork's overlay mount */
  const char *const *cgroup_procs; /* the fork's cgroup.procs files */
  size_t cgroup_count;
  const char *work_dir;            /* CRIU's files for this restore */
  /* Host path for a bind mount of the restored agent's socket
   * (sandboxes/<id>/agent.sock), or NULL for none. */
  const char *agent_publish_path;
  const char *hostname;            /* NULL keeps the snapshot's hostname */
  const char *on_fork;             /* NULL, or a command run by /bin/sh -c */
  int64_t on_fork_timeout_ms;      /* 0: 60 s */
  bool lazy_pages;                 /* restore memory on demand */
  int timeout_ms;                  /* for CRIU; 0: 120 s */
} sl_fork_launch;

typedef struct sl_fork_result {
  pid_t init_pid;     /* host pid of the fork's PID 1 */
  int on_fork_exit;   /* exit code of on_fork; 0 when there is none */
  double restore_ms;  /* criu restore */
  double hooks_ms;    /* agent ready, hostname, entropy, on_fork */
} sl_fork_result;

/* Restore a snapshot into a new fork and set its hostname from the host,
 * joining its UTS namespace, because the agent lacks CAP_SYS_ADMIN, and
 * write it to the fork's /etc/hostname as PID 1 does at a fresh start. Then
 * run the agent's post-restore hooks: 32 fresh random bytes mixed into
 * the kernel's pool (a fork must not share its source's random state),
 * and `on_fork`. Call it
 * from the fork's monitor, a child subreaper: the restored PID 1 becomes
 * its child. On any failure every task in the fork's cgroups is killed. A
 * non-zero exit of `on_fork` is reported in `on_fork_exit`, not as a
 * failure. */
int sl_snapshot_launch_fork(const sl_fork_launch *launch, sl_fork_result *result,
                            sl_error *err);

/* The agent's socket inside the sandbox root mounted at `root`
 * (/run/sandlot/agent.sock), opened O_PATH with RESOLVE_IN_ROOT so that a
 * symlink the sandbox put there cannot lead to a host file. Returns the
 * fd; connect through "/proc/self/fd/<fd>". */
int sl_agent_socket_open_in_root(const char *root, sl_error *err);

/* Bind-mount the agent socket of the sandbox at `root` onto `host_path`
 * (created as an empty file first): a host handle the sandbox cannot
 * redirect. */
int sl_agent_socket_publish(const char *root, const char *host_path, sl_error *err);

/* The cgroup directory of `controller` from a catalog cgroups JSON object
 * ({"freezer": "/sys/fs/cgroup/freezer/..."}). Fails with ENOENT when the
 * controller is missing and EINVAL for malformed JSON. */
int sl_cgroup_path_from_json(const char *json, const char *controller, char *buf, size_t size,
                             sl_error *err);

#endif
