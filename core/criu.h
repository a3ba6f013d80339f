/* Running CRIU: an explicit options structure, a pure argv builder and the
 * privileged execution of one CRIU operation.
 *
 * sl_criu_build_argv() turns the options into the exact command line and
 * rejects invalid combinations without touching the system, so it is
 * unit-tested without root. sl_criu_run()
 * spawns CRIU by absolute path, waits with a timeout and, on failure, puts
 * only the error lines of the operation's log into the sl_error message.
 * docs/ARCHITECTURE.md (Snapshots) records why each option is used. */
#ifndef SANDLOT_CRIU_H
#define SANDLOT_CRIU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

typedef enum {
  SL_CRIU_CHECK = 0,
  SL_CRIU_DUMP,
  SL_CRIU_RESTORE,
  SL_CRIU_LAZY_PAGES, /* the `criu lazy-pages` daemon of a lazy restore */
} sl_criu_command;

/* --network-lock; DEFAULT leaves CRIU's choice (iptables, absent here). */
typedef enum {
  SL_CRIU_NETLOCK_DEFAULT = 0,
  SL_CRIU_NETLOCK_IPTABLES,
  SL_CRIU_NETLOCK_NFTABLES,
  SL_CRIU_NETLOCK_SKIP,
} sl_criu_network_lock;

/* --manage-cgroups=MODE; DEFAULT omits the option (CRIU uses "soft"). */
typedef enum {
  SL_CRIU_CGROUPS_DEFAULT = 0,
  SL_CRIU_CGROUPS_IGNORE,
  SL_CRIU_CGROUPS_NONE,
  SL_CRIU_CGROUPS_PROPS,
  SL_CRIU_CGROUPS_SOFT,
  SL_CRIU_CGROUPS_FULL,
  SL_CRIU_CGROUPS_STRICT,
} sl_criu_cgroups;

#define SL_CRIU_MAX_CGROUP_ROOTS 8
#define SL_CRIU_MAX_EXTERNAL 8

/* One CRIU invocation. Zero-initialize, then set what the command needs.
 * Paths are used as given; the builder requires absolute paths where CRIU
 * resolves them from another directory than ours. */
typedef struct sl_criu_opts {
  sl_criu_command command;

  /* Common to dump, restore and lazy-pages. */
  const char *images_dir; /* -D, absolute; required */
  const char *work_dir;   /* -W, absolute; required: logs and stats go here */
  const char *log_name;   /* -o, file name inside work_dir; default "<command>.log" */
  int log_level;          /* -v0..-v4; 0 in the struct means CRIU's default (2) */
  const char *action_script;        /* --action-script, absolute */
  bool empty_net_ns;                /* --empty-ns net */
  sl_criu_cgroups manage_cgroups;   /* --manage-cgroups=MODE */
  const char *cgroup_roots[SL_CRIU_MAX_CGROUP_ROOTS]; /* --cgroup-root "ctl:/path" */
  bool file_locks;                  /* --file-locks */
  bool tcp_established;             /* --tcp-established */
  /* --external TYPE[ID]:KEY: on dump, a resource CRIU leaves out of the
   * images (e.g. "net[4026532450]:sandlot-net"); on restore, where to find
   * one (e.g. "mnt[dev]:/path"). */
  const char *external[SL_CRIU_MAX_EXTERNAL];

  /* Dump only. */
  pid_t pid;                        /* -t: host pid of the tree's root; required */
  bool leave_running;               /* --leave-running */
  const char *freeze_cgroup;        /* --freeze-cgroup, absolute freezer dir */
  sl_criu_network_lock network_lock;
  uint64_t ghost_limit;             /* --ghost-limit in bytes; 0 = CRIU's 1 MiB */
  int freeze_timeout_s;             /* --timeout: seconds CRIU may spend seizing
                                       the tree (it stays frozen meanwhile);
                                       0 = CRIU's 10 */
  bool display_stats;               /* --display-stats (stats also go to stats-dump) */

  /* Restore only. */
  const char *root;                 /* --root, absolute */
  const char *pidfile;              /* --pidfile, absolute; required with detach */
  bool detach;                      /* -d: return once the tree runs */
  bool lazy_pages;                  /* --lazy-pages: needs a running lazy-pages daemon */
  /* --inherit-fd fd[N]:KEY: the descriptor N of CRIU stands for the
   * external resource KEY of the dump. */
  const char *inherit_fds[SL_CRIU_MAX_EXTERNAL];

  /* Check only. */
  const char *feature;              /* --feature NAME; NULL checks everything */
} sl_criu_opts;

/* A NULL-terminated argument vector that owns its strings. */
typedef struct sl_argv {
  char **argv;
  size_t count;
  size_t capacity;
} sl_argv;

void sl_argv_free(sl_argv *args);

/* Build the argv of `criu` for `opts`, with `criu_path` as argv[0].
 * Pure: reads nothing but its arguments. Returns 0, or -EINVAL with the
 * offending option in `err` for a missing required path, a relative path
 * where an absolute one is required, an option that does not belong to the
 * command, or an invalid combination (lazy pages without a work directory,
 * detach without a pidfile, cgroup roots with --manage-cgroups=ignore). */
int sl_criu_build_argv(const sl_criu_opts *opts, const char *criu_path, sl_argv *out,
                       sl_error *err);

/* Format argv as one shell-quoted line for logs, e.g.
 * `criu dump -D '/tmp/a b'`. Truncates to `size`; returns `buf`. */
char *sl_criu_format_argv(char *const *argv, char *buf, size_t size);

/* The log file name of `opts` inside its work directory. */
const char *sl_criu_log_name(const sl_criu_opts *opts);

/* The CRIU binary: $SANDLOT_CRIU when set (tests), else SANDLOT_CRIU_PATH.
 * Never looked up on PATH. */
const char *sl_criu_path(void);

/* How to run one operation. */
typedef struct sl_criu_exec {
  int timeout_ms;               /* <= 0: no timeout */
  /* Files named "cgroup.procs" the CRIU process writes itself into before
   * exec, so a restored tree with --manage-cgroups=ignore starts in them. */
  const char *const *join_cgroups;
  size_t join_cgroup_count;
  /* Extra "NAME=value" entries for CRIU's environment, which CRIU passes on
   * to the action script. */
  const char *const *env;
  size_t env_count;
  /* > 0: before exec, move the CRIU process into a new network namespace
   * with loopback up and keep a descriptor of it as this fd number, for
   * --inherit-fd fd[N]:KEY. */
  int net_ns_fd;
} sl_criu_exec;

typedef struct sl_criu_result {
  int exit_status;              /* CRIU's exit code; 128+signal when killed */
  double elapsed_ms;
  char log_path[4096];          /* work_dir/log_name */
} sl_criu_result;

/* Run CRIU for `opts` and wait for it. Blocking: call it from a thread or a
 * child process, never from the loop. CRIU's stdout and stderr go to
 * "criu.out" in the work directory, next to its log. Returns 0 when CRIU
 * exits 0; -EIO with CRIU's error lines when it fails; -ETIMEDOUT after
 * killing it when the timeout passes; -EINVAL for invalid options. */
int sl_criu_run(const sl_criu_opts *opts, const sl_criu_exec *exec, sl_criu_result *result,
                sl_error *err);

/* Copy the error lines of a CRIU log into `buf` as "line; line", without
 * CRIU's timestamps and without lines that CRIU also prints on success.
 * Keeps the last lines when they do not all fit. Returns the number of
 * lines kept. */
int sl_criu_error_lines(const char *log_text, char *buf, size_t size);

/* Times and counts from stats-dump or stats-restore (microseconds). */
typedef struct sl_criu_stats {
  bool has_dump;
  uint32_t freezing_time_us;
  uint32_t frozen_time_us;
  uint32_t memdump_time_us;
  uint32_t memwrite_time_us;
  uint64_t pages_scanned;
  uint64_t pages_written;
  uint64_t pages_lazy;
  bool has_restore;
  uint32_t forking_time_us;
  uint32_t restore_time_us;
  uint64_t pages_restored;
} sl_criu_stats;

/* Decode a stats image (the bytes of stats-dump or stats-restore). */
int sl_criu_parse_stats(const unsigned char *data, size_t size, sl_criu_stats *stats,
                        sl_error *err);

/* Read and decode the stats image at `path`. */
int sl_criu_read_stats(const char *path, sl_criu_stats *stats, sl_error *err);

#endif
