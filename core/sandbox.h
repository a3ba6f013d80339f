/* The sandbox API of the core: create, inspect, freeze, thaw, kill and
 * collect sandboxes of one store.
 *
 * Every call blocks (the Lua layer runs them on the uv threadpool) and is
 * safe to call from several threads on one handle. Calls dispatch on the
 * sandbox's backend ("process" now); backend code lives in its own files
 * (proc_*.c for process sandboxes).
 *
 * Errors: an unknown sandbox or template fails with ENOENT, and an
 * invalid spec with EINVAL naming the value. A call that needs a live
 * sandbox fails with ESRCH on one that has ended, and with EBUSY when
 * another operation keeps the sandbox's op.lock for too long. */
#ifndef SANDLOT_SANDBOX_H
#define SANDLOT_SANDBOX_H

#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "run.h"
#include "catalog.h"

#define SL_SANDBOX_ID_MAX 16      /* "sb-" + 12 hex digits + NUL */
#define SL_SANDBOX_LABELS_MAX 1024
#define SL_SANDBOX_PATH_MAX 4096

/* What to create. Zero or NULL fields take the documented default. */
typedef struct sl_create_spec {
  sl_backend backend;        /* SL_BACKEND_PROCESS (0) */
  const char *template_name; /* default "base" */
  int64_t timeout_sec;       /* 0: no timeout; counted from creation */
  sl_on_timeout on_timeout;  /* kill (default) or pause; pause_fs is not
                                supported by the process backend yet */
  const char *memory;        /* memory limit, "512M", "1G"; default "1G" */
  int64_t pids;              /* max processes and threads; default 1024 */
  int64_t cpu_shares;        /* relative CPU weight on the cpu.shares scale,
                                2..262144 (1024 is a v1 default); 0 leaves
                                the kernel's default */
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
} sl_create_spec;

/* What the store records about one sandbox. */
typedef struct sl_sandbox_info {
  char id[SL_SANDBOX_ID_MAX];
  sl_backend backend;
  char template_name[SL_NAME_SIZE];
  char base_layer_id[SL_ID_SIZE]; /* top read-only layer below the agent's */
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

/* Set the timeout to `seconds` from now; 0 removes it. */
int sl_sandbox_set_timeout(sl_sandboxes *h, const char *id, int64_t seconds, sl_error *err);

/* Clean up what a crashed host or monitor left. For every sandbox whose
 * monitor is gone, kill its processes, unmount what is mounted below its
 * directory, remove its cgroups and mark it dead ("monitor_lost"). Rows
 * stuck in "creating" without a monitor for 60 s are dropped, and dead
 * sandboxes with mounts or cgroups left are released again. Writes the
 * number of sandboxes cleaned to `cleaned` (may be NULL). */
int sl_sandbox_gc(sl_sandboxes *h, int *cleaned, sl_error *err);

/* Check `spec` without creating anything: backend, template name, sizes,
 * limits, env and label syntax. */
int sl_sandbox_spec_check(const sl_create_spec *spec, sl_error *err);

#endif
