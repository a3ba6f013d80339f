/* The sandbox API of the core: create, inspect, freeze, thaw, kill,
 * snapshot, fork, pause, resume, roll back and collect sandboxes of one
 * store, and list and delete their snapshots.
 *
 * Every call blocks (the Lua layer runs them on the uv threadpool) and is
 * safe to call from several threads on one handle. Calls dispatch on the
 * sandbox's backend, "process" or "vm"; backend code lives in its own
 * files (proc_*.c for process sandboxes, vm_backend*.c for microVMs, see
 * docs/ARCHITECTURE.md for what differs).
 *
 * Errors: an unknown sandbox, snapshot or template fails with ENOENT,
 * and an invalid spec with EINVAL naming the value. A call that needs a
 * live sandbox fails with ESRCH on one that has ended, and with EBUSY
 * when another operation keeps the sandbox's op.lock for too long.
 *
 * Concurrency: the state-changing calls of one sandbox (kill, freeze,
 * thaw, snapshot, pause, resume, rollback, and the monitor's timeout
 * action) take its op.lock, so they run one at a time. Snapshot and pause
 * fail with EBUSY at once while another operation has the lock, unless
 * their options ask to wait. The others wait up to 30 s. */
#ifndef SANDLOT_SANDBOX_H
#define SANDLOT_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "run.h"
#include "catalog.h"
#include "snapshot.h"

#define SL_SANDBOX_ID_MAX 16      /* "sb-" + 12 hex digits + NUL */
#define SL_SANDBOX_LABELS_MAX 1024
#define SL_SANDBOX_PATH_MAX 4096

/* The maximum timeout, in seconds (100 years of 365 days). Create,
 * set_timeout and the monitor accept 0 (none) to this. */
#define SL_TIMEOUT_MAX_SEC (100LL * 365 * 24 * 3600)
/* The maximum pids limit: Linux's PID_MAX_LIMIT on 64-bit systems. */
#define SL_PIDS_MAX 4194304
/* The maximum of cpu.shares on cgroup v1 (MAX_SHARES of the scheduler). */
#define SL_CPU_SHARES_MAX 262144

/* What to create. Zero or NULL fields take the documented default. */
typedef struct sl_create_spec {
  sl_backend backend;        /* SL_BACKEND_PROCESS (0); with `snapshot`, 0
                                means the snapshot's backend */
  const char *template_name; /* default "base" */
  int64_t timeout_sec;       /* 0: no timeout; counted from creation; at
                                most SL_TIMEOUT_MAX_SEC */
  sl_on_timeout on_timeout;  /* kill (default); pause: dump memory and
                                files to disk (state paused); pause_fs: keep
                                the files only, a resume boots a fresh agent
                                on them */
  const char *memory;        /* memory limit, "512M", "1G"; default "1G";
                                16M to INT64_MAX bytes. A limit above the
                                host's memory limits nothing. For a VM its
                                guest RAM, whole MiB, default 256M */
  int64_t pids;              /* max processes and threads, 1 to SL_PIDS_MAX;
                                0: the default, 1024. This and the next two:
                                process sandboxes only (EINVAL for a VM) */
  int64_t cpu_shares;        /* relative CPU weight on the cpu.shares scale,
                                2 to SL_CPU_SHARES_MAX (1024 is a v1
                                default); 0 leaves the kernel's default */
  double cpus;               /* CPU time quota in CPUs (0.5 = half of one);
                                0: no quota */
  const char *const *env;    /* "NAME=value" entries, NULL-terminated: the
                                environment of the agent and so the default
                                of every command */
  const char *cwd;           /* working directory of the agent, created with
                                its parents when missing; default "/" */
  const char *hostname;      /* default "sandlot" */
  const char *const *labels; /* "key=value" entries, NULL-terminated */
  int auto_kill;             /* kill the sandbox when the creating process
                                exits */
  /* Start from this snapshot (an id, "name:tag" or "name") instead of the
   * template. A full snapshot is forked: its processes continue from the
   * snapshot's memory in a new sandbox with its own id, cgroups, network
   * namespace and hostname (default: the new id), and 32 fresh random
   * bytes in the kernel's pool. A filesystem-only snapshot boots a fresh
   * agent on its files. The backend and template are the snapshot's: a
   * different template_name, or a backend other than 0 that differs, is
   * EINVAL. A fork keeps the
   * environment and working directory of the snapshot's agent, so env
   * and cwd are EINVAL with a full snapshot. The limits, timeout,
   * on_timeout, hostname, labels and auto_kill apply as for any sandbox.
   * A limit left at 0 or NULL is the one of the sandbox the snapshot was
   * taken of, while that sandbox's record exists, else the default. */
  const char *snapshot;
  /* With a full snapshot: a command run by /bin/sh -c in the fork before
   * create returns; a non-zero exit fails the create (EIO). */
  const char *on_fork;
} sl_create_spec;

/* What the store records about one sandbox. */
typedef struct sl_sandbox_info {
  char id[SL_SANDBOX_ID_MAX];
  sl_backend backend;
  char template_name[SL_NAME_SIZE];
  char base_layer_id[SL_ID_SIZE]; /* top read-only layer below the agent's */
  char source_snapshot_id[SL_ID_SIZE]; /* the snapshot it was forked from or
                                          last rolled back to; "" if none */
  sl_sandbox_state state;
  int64_t created_at_ms;     /* wall clock, ms since the epoch */
  int64_t ended_at_ms;       /* 0 while alive */
  int64_t timeout_ms;        /* 0: no timeout */
  int64_t deadline_ms;       /* wall clock time of the timeout; 0: none */
  sl_on_timeout on_timeout;
  uint64_t memory_bytes;
  int64_t pids_max;
  int64_t cpu_shares;
  double cpus;
  int auto_kill;
  char labels[SL_SANDBOX_LABELS_MAX]; /* "key=value" lines */
  pid_t init_pid;            /* host pid of the sandbox's PID 1 */
  uint64_t init_start;       /* its start time (clock ticks after boot) */
  pid_t monitor_pid;         /* 0 until the sandbox runs */
  char cgroups[SL_SANDBOX_PATH_MAX];      /* cgroup directories, one a line */
  char agent_socket[SL_SANDBOX_PATH_MAX]; /* host path of the agent socket
                                             (sandboxes/<id>/agent.sock); ""
                                             unless running or frozen */
  char root[SL_SANDBOX_PATH_MAX];         /* host path of the root mount */
  int exit_status;           /* of PID 1, 0..255 when it exited; -1 otherwise */
  int exit_signal;           /* signal that ended PID 1; 0 otherwise */
  char end_reason[32];       /* exited, killed, timeout, creator_exited, oom,
                                monitor_lost (empty while alive or unknown) */
} sl_sandbox_info;

typedef struct sl_sandboxes sl_sandboxes;

/* Open the store at `home` (created when missing). */
int sl_sandboxes_open(const char *home, sl_sandboxes **out, sl_error *err);
void sl_sandboxes_close(sl_sandboxes *h);
const char *sl_sandboxes_home(const sl_sandboxes *h);

/* Send template build output (minutes on the first use of a template on
 * this machine) to `fn` instead of the log. */
void sl_sandboxes_set_progress(sl_sandboxes *h, sl_line_fn fn, void *data);

/* Create a sandbox and wait until its agent accepts connections. On
 * success `out` describes the running sandbox (id, agent_socket, pids).
 * On failure nothing of the sandbox is left behind. */
int sl_sandbox_create(sl_sandboxes *h, const sl_create_spec *spec, sl_sandbox_info *out,
                      sl_error *err);

/* Read a sandbox's record. A sandbox whose monitor has vanished (the
 * host crashed) reads as it was recorded until sl_sandbox_gc(). */
int sl_sandbox_get(sl_sandboxes *h, const char *id, sl_sandbox_info *out, sl_error *err);

/* All sandboxes of the store, oldest first. Free the array with free(). */
int sl_sandbox_list(sl_sandboxes *h, sl_sandbox_info **out, size_t *count, sl_error *err);

/* Kill every process of the sandbox and release its mounts and cgroups;
 * returns once all of that is done. The record stays, state dead, reason
 * "killed". ESRCH when the sandbox has already ended. */
int sl_sandbox_kill(sl_sandboxes *h, const char *id, sl_error *err);

/* Remove the record and the folder (logs, end reason) of a sandbox that
 * has ended. EBUSY while it is alive (kill it first). Its snapshots stay. */
int sl_sandbox_remove(sl_sandboxes *h, const char *id, sl_error *err);

/* Stop (freeze) or resume (thaw) every process of the sandbox through the
 * freezer cgroup. Freezing a frozen sandbox, or thawing a running one,
 * succeeds and changes nothing. */
int sl_sandbox_freeze(sl_sandboxes *h, const char *id, sl_error *err);
int sl_sandbox_thaw(sl_sandboxes *h, const char *id, sl_error *err);

/* Set the timeout to `seconds` from now (at most SL_TIMEOUT_MAX_SEC); 0
 * removes it. */
int sl_sandbox_set_timeout(sl_sandboxes *h, const char *id, int64_t seconds, sl_error *err);

/* Create `count` sandboxes from one spec in parallel (forks of one
 * snapshot, typically), writing them to out[0..count-1]. All or nothing:
 * when one fails, the others are killed and removed, and the first error
 * is returned. EINVAL for a count outside 1..64. */
int sl_sandbox_create_many(sl_sandboxes *h, const sl_create_spec *spec, size_t count,
                           sl_sandbox_info *out, sl_error *err);

/* How to take a snapshot. Zero fields take the defaults. */
typedef struct sl_snapshot_opts {
  const char *name;          /* NULL or a snapshot name */
  const char *tag;           /* NULL or a tag (needs a name) */
  const char *const *labels; /* "key=value" entries, NULL-terminated */
  bool files_only;           /* filesystem only (kind "fs"): no memory, so
                                sandboxes made from it start a fresh agent */
  int wait_ms;               /* how long to wait when another operation holds
                                the sandbox; 0: fail with EBUSY at once */
} sl_snapshot_opts;

/* Snapshot a running or frozen sandbox: its memory and files at one
 * instant (the processes stop for the dump, tens of milliseconds) or its
 * files only. The sandbox keeps running with the same id. A frozen
 * sandbox is thawed for a memory snapshot, because its agent must reply to
 * the quiesce before the dump: its processes run from then until CRIU
 * freezes them (milliseconds), and it is frozen again afterwards. `out`
 * receives the snapshot (release with sl_snapshot_clear); `timing` may
 * be NULL. Fails with ENOENT, ESRCH (ended), EBUSY (another operation, or
 * a paused sandbox), EINVAL (bad name, tag or labels), ETIMEDOUT (the
 * agent did not reply to the quiesce) or EIO (CRIU failed). On failure no
 * snapshot is left and the sandbox keeps running, or stays frozen. */
int sl_sandbox_snapshot(sl_sandboxes *h, const char *id, const sl_snapshot_opts *opts,
                        sl_snapshot *out, sl_snapshot_timing *timing, sl_error *err);

/* How to pause. */
typedef struct sl_pause_opts {
  bool files_only; /* keep the files only; a resume boots a fresh agent */
  int wait_ms;     /* as in sl_snapshot_opts */
} sl_pause_opts;

/* Dump the sandbox's memory to disk and stop it: state "paused", no
 * process, mounts and cgroups released, the id kept. Its files stay in
 * its upper layer. With files_only nothing of the processes is kept.
 * A frozen sandbox runs briefly for the quiesce as in
 * sl_sandbox_snapshot(), and resumes running. Pausing a paused sandbox
 * succeeds and changes nothing. `opts` may be NULL. Fails like
 * sl_sandbox_snapshot(); when the dump fails the sandbox keeps running,
 * or stays frozen. */
int sl_sandbox_pause(sl_sandboxes *h, const char *id, const sl_pause_opts *opts,
                     sl_error *err);

/* Restore a paused sandbox with the same id: its processes continue from
 * the pause (or a fresh agent starts on its files after a files-only
 * pause), and its timeout counts again from now. Resuming a running or
 * frozen sandbox succeeds and changes nothing. `out` (may be NULL)
 * receives the record. With auto_kill the sandbox now belongs to the
 * calling process. On failure it stays paused with its files. */
int sl_sandbox_resume(sl_sandboxes *h, const char *id, sl_sandbox_info *out, sl_error *err);

/* The record of a sandbox that can take requests: a paused one is
 * resumed first. ESRCH when it has ended. */
int sl_sandbox_connect(sl_sandboxes *h, const char *id, sl_sandbox_info *out, sl_error *err);

/* Put a running or frozen sandbox back to the state of `snapshot` (an
 * id, "name:tag" or "name") in place. It keeps its id, hostname, cgroups
 * and timeout, and gets the processes, memory and files of the snapshot.
 * The snapshot must have been taken of this sandbox or of one of its
 * ancestors, the sandboxes its source snapshots were taken of (as far as
 * those snapshot rows still exist); EINVAL otherwise. A filesystem-only
 * snapshot boots a fresh agent on its files. After a failed restore the
 * sandbox has ended ("rollback_failed"). */
int sl_sandbox_rollback(sl_sandboxes *h, const char *id, const char *snapshot, sl_error *err);

/* One ready snapshot by id, "name:tag" or "name" (the newest). ENOENT
 * when there is none. Release `out` with sl_snapshot_clear(). */
int sl_snapshots_get(sl_sandboxes *h, const char *ref, sl_snapshot *out, sl_error *err);

/* A page of snapshots, newest first, filtered by reference, source
 * sandbox and label as the catalog's sl_catalog_snapshot_list() does.
 * Unknown names or sandboxes give an empty page. */
int sl_snapshots_list(sl_sandboxes *h, const sl_snapshot_query *query, sl_snapshot_page *page,
                      sl_error *err);

/* Delete a snapshot and its files. Sandboxes started from it keep
 * running; its layer stays until none of them mounts it. ENOENT for an
 * unknown or already deleted snapshot. */
int sl_snapshots_delete(sl_sandboxes *h, const char *ref, sl_error *err);

/* What sl_sandbox_gc() cleaned, counted by kind. */
typedef struct sl_gc_counts {
  int sandboxes; /* sandboxes released, dropped, thawed or marked dead */
  int mounts;    /* mounts below sandboxes/ of ids without a record */
  int snapshots; /* snapshots a crashed take or delete left: pending rows
                    and directories without a row */
  int layers;    /* layers that nothing used any more */
} sl_gc_counts;

/* Clean up what a crashed host or monitor left. For every sandbox whose
 * monitor is gone, kill its processes, unmount what is mounted below its
 * directory, remove its cgroups and mark it dead ("monitor_lost"). Rows
 * stuck in "creating" without a monitor for 60 s are dropped, and dead
 * sandboxes with mounts or cgroups left are released again. A paused
 * sandbox keeps its files; only mounts and cgroups a crashed pause left
 * are released. Running sandboxes left frozen by a crashed snapshot are
 * thawed. Snapshots a crashed take or delete left (pending rows older
 * than 60 s, directories without a row) are removed, and so are layers
 * that nothing uses any more. Writes what was cleaned, by kind, to
 * `counts` (may be NULL). */
int sl_sandbox_gc(sl_sandboxes *h, sl_gc_counts *counts, sl_error *err);

/* Remove the records and folders of sandboxes that ended at least
 * `age_ms` milliseconds ago (0: every ended one), as sl_sandbox_remove()
 * does; their snapshots stay. Writes how many were removed to `removed`
 * (may be NULL). A sandbox that cannot be removed is logged and skipped,
 * and the first such failure is returned after the others were tried. */
int sl_sandbox_remove_ended(sl_sandboxes *h, int64_t age_ms, int *removed, sl_error *err);

/* Check `spec` without creating anything: backend, template name, sizes,
 * limits, env and label syntax. */
int sl_sandbox_spec_check(const sl_create_spec *spec, sl_error *err);

#endif
