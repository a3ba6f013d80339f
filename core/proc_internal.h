/* Helpers shared by the process backend's files (proc_backend.c and
 * proc_snapshot.c). Internal to the core. */
#ifndef SANDLOT_PROC_INTERNAL_H
#define SANDLOT_PROC_INTERNAL_H

#include <stddef.h>
#include <sys/types.h>

#include "backend.h"

/* Start the monitor of sandbox `id` detached, with the config already in
 * sandboxes/<id>/config, and wait for its ready line: 0 on "ok", the
 * monitor's error otherwise. With `auto_kill` the monitor watches the
 * calling process. */
int sl_proc_start_monitor(sl_sandboxes *h, const char *id, int auto_kill, sl_error *err);

/* Write the path of sandboxes/<id>/monitor.sock to `buf`. */
void sl_proc_monitor_socket(const sl_sandboxes *h, const char *id, char *buf, size_t len);

/* The running monitor of the sandbox, or 0. */
pid_t sl_proc_live_monitor(const sl_sandboxes *h, const sl_sandbox_info *info);

/* Wait up to `timeout_ms` for process `pid` to exit. */
void sl_proc_wait_exit(pid_t pid, int timeout_ms);

/* The snapshot operations of the process backend (proc_snapshot.c). */
int sl_proc_snapshot(sl_sandboxes *h, const sl_sandbox_info *info, const sl_snapshot_opts *opts,
                     sl_snapshot *out, sl_snapshot_timing *timing, sl_error *err);
int sl_proc_pause(sl_sandboxes *h, const sl_sandbox_info *info, bool files_only, sl_error *err);
int sl_proc_resume(sl_sandboxes *h, const sl_sandbox_info *info, sl_error *err);
int sl_proc_rollback(sl_sandboxes *h, const sl_sandbox_info *info, const sl_snapshot *snapshot,
                     sl_error *err);
int sl_proc_snapshot_delete(sl_sandboxes *h, const sl_snapshot *snapshot, sl_error *err);

#endif
