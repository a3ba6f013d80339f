/* Freezing a sandbox's tasks through its cgroup: the v1 freezer
 * controller (freezer.state) or, on the unified hierarchy, cgroup v2's
 * cgroup.freeze and cgroup.events. The functions take the cgroup
 * directory and find out which one it is. */
#ifndef SANDLOT_FREEZER_H
#define SANDLOT_FREEZER_H

#include "error.h"

typedef enum {
  SL_FREEZER_THAWED = 0,
  SL_FREEZER_FREEZING,
  SL_FREEZER_FROZEN,
} sl_freezer_state;

/* Read the freezer state of the cgroup directory `cgroup`. */
int sl_freezer_get(const char *cgroup, sl_freezer_state *state, sl_error *err);

/* Freeze the cgroup and wait until every task is frozen, polling every
 * millisecond (CRIU's own loop sleeps 100 ms between checks). Fails with
 * ETIMEDOUT, and thaws again, when that takes longer than `timeout_ms`
 * (<= 0: 10 s). */
int sl_freezer_freeze(const char *cgroup, int timeout_ms, sl_error *err);

/* sl_freezer_freeze() for a CRIU dump: while a task of the cgroup waits
 * for a vfork child (dash runs commands with vfork, posix_spawn uses it),
 * thaw, let the child exec, and freeze again, for at most `timeout_ms`.
 * CRIU would otherwise stop the child before its exec, and the parent,
 * which no ptrace request interrupts in that wait, would hold the dump
 * until CRIU's timeout (10 s) fails it. */
int sl_freezer_freeze_for_dump(const char *cgroup, int timeout_ms, sl_error *err);

/* Thaw the cgroup; succeeds when it is already thawed. */
int sl_freezer_thaw(const char *cgroup, sl_error *err);

#endif
