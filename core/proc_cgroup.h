/* Cgroups of process sandboxes.
 *
 * Each sandbox gets one cgroup per controller at
 * <controller mount>/sandlot/<id>: on cgroup v1 the freezer, memory,
 * pids, cpu and devices hierarchies; on cgroup v2 one directory in the
 * unified hierarchy with the memory, pids and cpu controllers enabled. The
 * monitor and the host stay outside, so freezing, OOM kills and pids.max
 * touch only the sandbox. v1 is used when its controllers are mounted
 * (hybrid hosts); v2 when it has the controllers enabled. */
#ifndef SANDLOT_PROC_CGROUP_H
#define SANDLOT_PROC_CGROUP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

#define SL_CGROUP_PATH_MAX 512

typedef enum sl_cgroup_mode { SL_CGROUP_V1 = 1, SL_CGROUP_V2 = 2 } sl_cgroup_mode;

/* The controllers sandlot uses; on v2 only the unified slot is set. */
typedef enum sl_cgroup_controller {
  SL_CG_FREEZER,
  SL_CG_MEMORY,
  SL_CG_PIDS,
  SL_CG_CPU,
  SL_CG_DEVICES,
  SL_CG_UNIFIED,
  SL_CG_COUNT,
} sl_cgroup_controller;

/* Where each controller's hierarchy is mounted. */
typedef struct sl_cgroup_layout {
  sl_cgroup_mode mode;
  char mounts[SL_CG_COUNT][SL_CGROUP_PATH_MAX]; /* empty when absent */
} sl_cgroup_layout;

/* The cgroup directories of one sandbox. */
typedef struct sl_cgroup {
  sl_cgroup_mode mode;
  char dirs[SL_CG_COUNT][SL_CGROUP_PATH_MAX]; /* empty when unused */
} sl_cgroup;

typedef struct sl_cgroup_limits {
  uint64_t memory_bytes; /* 0: no limit */
  int64_t pids_max;      /* 0: no limit */
  int64_t cpu_shares;    /* v1 cpu.shares scale, 2..262144; 0: default */
  double cpus;           /* quota in CPUs; 0: none */
} sl_cgroup_limits;

/* One file write that applies a limit. */
typedef struct sl_cgroup_write {
  sl_cgroup_controller controller;
  const char *file;
  char value[64];
} sl_cgroup_write;

const char *sl_cgroup_controller_name(sl_cgroup_controller c);

/* Find the controller mounts in /proc/self/mountinfo and pick the mode.
 * ENOTSUP when neither v1 nor v2 offers freezer, memory and pids. */
int sl_cgroup_detect(sl_cgroup_layout *out, sl_error *err);

/* Pick the mode from mountinfo text and, for v2, the text of the root's
 * cgroup.controllers (NULL when unreadable). Pure; used by detect. */
int sl_cgroup_layout_parse(const char *mountinfo, const char *v2_controllers,
                           sl_cgroup_layout *out, sl_error *err);

/* Fill the directories of sandbox `id` under `layout`. Pure. */
void sl_cgroup_for(const sl_cgroup_layout *layout, const char *id, sl_cgroup *out);

/* The writes that apply `limits` in `mode`, in order (v1 memsw after the
 * memory limit). Returns how many were written to `out`. Pure. */
size_t sl_cgroup_plan(sl_cgroup_mode mode, const sl_cgroup_limits *limits, sl_cgroup_write *out,
                      size_t max);

/* The v1 device allow-list, "c MAJ:MIN rwm" entries, NULL-terminated. */
extern const char *const sl_cgroup_device_allow[];

/* Serialize to and from "controller=path" lines (the record's cgroups). */
int sl_cgroup_format(const sl_cgroup *cg, char *buf, size_t len);
int sl_cgroup_parse(const char *text, sl_cgroup *out, sl_error *err);

/* Create the directories and apply the limits (and on v1 the device
 * allow-list). On failure removes what it created. */
int sl_cgroup_create(const sl_cgroup *cg, const sl_cgroup_limits *limits, sl_error *err);

/* Move process `pid` into every directory of `cg`. */
int sl_cgroup_add(const sl_cgroup *cg, pid_t pid, sl_error *err);

/* Freeze or thaw the cgroup and wait until the kernel reports the state
 * reached (FROZEN on v1, "frozen 1" in cgroup.events on v2). */
int sl_cgroup_freeze(const sl_cgroup *cg, sl_error *err);
int sl_cgroup_thaw(const sl_cgroup *cg, sl_error *err);

/* How many processes the OOM killer has killed in the cgroup (v1
 * memory.oom_control or v2 memory.events, "oom_kill"); 0 when unknown. */
long sl_cgroup_oom_kills(const sl_cgroup *cg);

/* Whether the cgroup is frozen or freezing (v1 FROZEN or FREEZING, v2
 * cgroup.freeze 1). */
int sl_cgroup_is_frozen(const sl_cgroup *cg);

/* Number of processes in the sandbox's cgroup, or a negative errno. */
int sl_cgroup_count_procs(const sl_cgroup *cg, sl_error *err);

/* SIGKILL every process in the cgroup (frozen ones included) and wait up
 * to `timeout_ms` until none is left. */
int sl_cgroup_kill_all(const sl_cgroup *cg, int timeout_ms, sl_error *err);

/* Remove the directories; missing ones are skipped. EBUSY when processes
 * remain after a short wait. */
int sl_cgroup_destroy(const sl_cgroup *cg, sl_error *err);

/* Whether `cg` has any directory on disk. */
int sl_cgroup_exists(const sl_cgroup *cg);

#endif
