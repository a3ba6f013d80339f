/* Releasing what a process sandbox holds on the host, shared by its
 * monitor (when the sandbox ends) and by gc (when the monitor is gone). */
#ifndef SANDLOT_PROC_RELEASE_H
#define SANDLOT_PROC_RELEASE_H

#include "error.h"
#include "sandbox.h"

/* The folder in sandboxes/<id>/ that contains the CRIU images of a pause. */
#define SL_PAUSE_DIR "pause"

/* Kill every process of the sandbox (its cgroup, and the recorded init
 * if it still runs with its recorded start time), unmount everything at
 * or below `sandbox_dir`, remove its cgroups and its root, upper, work
 * and pause directories. Idempotent; keeps going after a failed step and
 * reports the first failure. */
int sl_proc_release(const sl_sandbox_info *info, const char *sandbox_dir, sl_error *err);

/* The part of sl_proc_release() that a paused sandbox needs after a
 * crashed pause or resume: kill, unmount and remove the cgroups, but keep
 * the upper, work and pause directories that the resume restores from. */
int sl_proc_release_paused(const sl_sandbox_info *info, const char *sandbox_dir, sl_error *err);

/* Unmount everything at or below `prefix` in the caller's mount
 * namespace, deepest first. Writes how many were unmounted to `count`
 * (may be NULL). */
int sl_unmount_below(const char *prefix, int *count, sl_error *err);

#endif
