/* sandlot-monitor: the per-sandbox process that owns a process sandbox.
 *
 * The creator starts it detached (double fork, setsid, stdio on
 * /dev/null) as
 *
 *     sandlot-monitor --home HOME --id ID --ready-fd 3 [--creator-pidfd 4]
 *
 * and it reads sandboxes/<id>/config. It is a child subreaper. It creates
 * the cgroups, mounts the overlay, launches PID 1, waits for the agent's
 * socket, marks the record running and writes "ok" to the ready fd. On a
 * failure it undoes its work and writes "err ENAME message". Then it serves
 * monitor.sock (see monitor_client.h), enforces the timeout, kills the
 * sandbox when the creator exits (auto_kill), and when PID 1 ends records
 * the exit status, releases mounts and cgroups and exits. */
#ifndef SANDLOT_MONITOR_H
#define SANDLOT_MONITOR_H

#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common.h"
#include "error.h"
#include "proc_cgroup.h"
#include "proc_config.h"
#include "sandbox_store.h"

#define SL_MONITOR_MAX_WAITERS 16
typedef struct sl_monitor {
  sl_proc_config cfg;
  sl_sbstore *store;
  char dir[PATH_MAX];       /* sandboxes/<id> */
  char socket_path[PATH_MAX];
  sl_cgroup cgroup;
  int ready_fd;             /* to the creator; -1 once reported */
  int creator_pidfd;        /* -1 unless auto_kill */
  int signal_fd, listen_fd, timer_fd;
  pid_t init_pid;
  uint64_t init_start;
  int64_t deadline_ms;      /* 0: no timeout */
  int init_done;            /* PID 1 has been reaped */
  int exit_status, exit_signal;
  const char *end_reason;   /* set once the sandbox is ending */
  int paused;               /* PID 1 was ended by a pause: the files stay and
                               the record says paused */
  int waiters[SL_MONITOR_MAX_WAITERS]; /* kill requests, replied to at the end */
  int nwaiters;
  sl_monitor_requests requests; /* control connections (common.h) */
} sl_monitor;

/* How PID 1 comes to life, chosen by the config's launch key. The
 * monitor has created the cgroups and mounted the overlay before any
 * launcher runs, and waits for the agent socket afterwards.
 *
 * "fresh" clones a new init that execs the agent. "fork" and "resume"
 * run `criu restore -d` as a child of the monitor, from the config's
 * images: CRIU joins the sandbox's cgroups and a new network namespace
 * with loopback up before it restores, and the restored PID 1 is
 * reparented to the monitor (the child subreaper). "fork" then sets the
 * hostname, adds fresh entropy and runs on_fork through the agent (a
 * non-zero exit fails the launch); "resume" changes nothing. */
typedef int (*sl_monitor_launch_fn)(sl_monitor *m, pid_t *init_pid, sl_error *err);

int sl_monitor_launch_fresh(sl_monitor *m, pid_t *init_pid, sl_error *err);
int sl_monitor_launch_fork(sl_monitor *m, pid_t *init_pid, sl_error *err);
int sl_monitor_launch_resume(sl_monitor *m, pid_t *init_pid, sl_error *err);

/* Start PID 1 with the launcher of `launch` (NULL: "fresh"), wait until
 * the agent accepts connections and publish its socket at
 * sandboxes/<id>/agent.sock. EINVAL for an unknown launch mode. */
int sl_monitor_start_init(sl_monitor *m, const char *launch, sl_error *err);

/* Create the upper, work and root folders if missing and mount the
 * overlay of the config's layers at the root. */
int sl_monitor_mount_root(const sl_monitor *m, sl_error *err);

/* Record the sandbox running with the current PID 1. */
int sl_monitor_record_running(sl_monitor *m, sl_error *err);

/* Pause (pause.c): dump the tree into sandboxes/<id>/pause (or with
 * `files_only` keep nothing of it), end it, record the sandbox paused and
 * release its mounts and cgroups, keeping its upper and work folders. The
 * caller holds op.lock. When the dump fails the tree keeps running and
 * the error is returned; the monitor loop ends after a success. */
int sl_monitor_pause(sl_monitor *m, bool files_only, sl_error *err);

/* Rollback in place (pause.c): replace the tree and the overlay with the
 * state of snapshot `snapshot_id` in the same cgroups, and rebase the
 * record on it. The caller holds op.lock and has checked the snapshot's
 * lineage. A failure before the old tree is stopped leaves it running; a
 * later one ends the sandbox ("rollback_failed"). */
int sl_monitor_rollback(sl_monitor *m, const char *snapshot_id, sl_error *err);

/* Wait for PID 1 to exit after it was killed, without recording an end. */
void sl_monitor_reap_replaced(sl_monitor *m);

/* Entry point of the binary; returns the exit code. */
int sl_monitor_main(int argc, char **argv);

/* Handle one control request of monitor `monitor` (control.c); an
 * sl_monitor_request_fn. */
bool sl_monitor_handle_request(void *monitor, int fd, const char *line);

/* Start ending the sandbox: kill its processes and remember why. The
 * monitor finishes once PID 1 has been reaped. */
void sl_monitor_kill(sl_monitor *m, const char *reason);

/* Arm (or with 0 disarm) the timeout and record the new deadline. */
int sl_monitor_set_deadline(sl_monitor *m, int64_t deadline_ms, sl_error *err);

/* What the timeout does: kill, pause (memory and files to disk; files
 * only when the dump fails) or pause_fs (files only). */
void sl_monitor_on_timeout(sl_monitor *m);

#endif
