/* The process backend: sandboxes as process trees in their own
 * namespaces, each owned by a sandlot-monitor. */
#include <errno.h>
#include <ftw.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent_client.h"
#include "backend.h"
#include "log.h"
#include "oplock.h"
#include "monitor_client.h"
#include "proc_cgroup.h"
#include "proc_config.h"
#include "proc_init.h"
#include "proc_internal.h"
#include "proc_layers.h"
#include "proc_overlay.h"
#include "proc_release.h"
#include "proc_util.h"
#include "size.h"
#include "template.h"

extern char **environ;

#define DEFAULT_MEMORY (1ULL << 30)
#define DEFAULT_PIDS 1024
/* Template build and import happen before the monitor starts; this only
 * bounds cgroups, mounts and the agent's start. */
#define READY_TIMEOUT_MS 60000
#define MONITOR_REQUEST_TIMEOUT_MS 30000

static void join_labels(const char *const *labels, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (const char *const *l = labels; l && *l && used < len; l++) {
    int n = snprintf(buf + used, len - used, "%s\n", *l);
    if (n > 0) used += (size_t)n;
  }
}

static void fill_record(const sl_create_spec *spec, const char *id, sl_sandbox_info *info) {
  memset(info, 0, sizeof *info);
  snprintf(info->id, sizeof info->id, "%s", id);
  info->backend = SL_BACKEND_PROCESS;
  /* A fork takes its snapshot's template, which the catalog fills in. */
  const char *tname = spec->template_name ? spec->template_name : SL_TEMPLATE_DEFAULT;
  if (spec->snapshot != NULL && spec->template_name == NULL) tname = "";
  snprintf(info->template_name, sizeof info->template_name, "%s", tname);
  info->state = SL_SANDBOX_CREATING;
  info->timeout_ms = spec->timeout_sec * 1000;
  info->on_timeout = spec->on_timeout;
  info->memory_bytes = DEFAULT_MEMORY;
  if (spec->memory) sl_parse_size(spec->memory, &info->memory_bytes, NULL);
  info->pids_max = spec->pids ? spec->pids : DEFAULT_PIDS;
  info->cpu_shares = spec->cpu_shares; /* 0 keeps the kernel's default weight */
  info->cpus = spec->cpus;
  info->auto_kill = spec->auto_kill;
  join_labels(spec->labels, info->labels, sizeof info->labels);
  info->exit_status = -1;
}

/* Give a sandbox made from a snapshot the limits of the sandbox the
 * snapshot was taken of, where `spec` sets none. A fork restores its
 * source's memory, which the default limit can be too small for. */
static void inherit_limits(sl_sandboxes *h, const sl_create_spec *spec, const char *source_id,
                           sl_sandbox_info *info) {
  sl_sandbox_info source;
  sl_error ignored = {0};
  /* NOTE: once the source's record is removed (sandlot rm), a fork gets
   * the default limits. */
  if (source_id[0] == '\0' || sl_sbstore_get(h->store, source_id, &source, &ignored) < 0) return;
  if (spec->memory == NULL) info->memory_bytes = source.memory_bytes;
  if (spec->pids == 0) info->pids_max = source.pids_max;
  if (spec->cpu_shares == 0) info->cpu_shares = source.cpu_shares;
  if (spec->cpus == 0) info->cpus = source.cpus;
}

/* How the monitor of a new sandbox starts PID 1. */
typedef struct launch_plan {
  const char *mode;                        /* "fresh" or "fork" */
  char images[SL_SANDBOX_PATH_MAX];        /* fork: the snapshot's images */
  char snapshot_id[SL_ID_SIZE];            /* "" unless made from a snapshot */
  char source_id[SL_ID_SIZE];              /* the sandbox that snapshot was taken of */
  char agent_layer[SL_SANDBOX_PATH_MAX];
} launch_plan;

static int build_config(const sl_sandboxes *h, const sl_create_spec *spec,
                        const sl_sandbox_info *info, const launch_plan *plan,
                        char *const *lowers, size_t nlowers, sl_proc_config *cfg) {
  char dir[SL_SANDBOX_PATH_MAX], path[SL_SANDBOX_PATH_MAX + 16];
  sl_sandbox_dir(h, info->id, dir, sizeof dir);
  memset(cfg, 0, sizeof *cfg);
  cfg->id = strdup(info->id);
  cfg->home = strdup(h->home);
  cfg->root = strdup(info->root);
  snprintf(path, sizeof path, "%s/upper", dir);
  cfg->upper = strdup(path);
  snprintf(path, sizeof path, "%s/work", dir);
  cfg->work = strdup(path);
  /* A fork needs a hostname of its own: by default its id. */
  const char *hostname = strcmp(plan->mode, "fork") == 0 ? info->id : "sandlot";
  cfg->hostname = strdup(spec->hostname ? spec->hostname : hostname);
  cfg->cwd = strdup(spec->cwd ? spec->cwd : "/");
  cfg->launch = strdup(plan->mode);
  int rc = 0;
  if (strcmp(plan->mode, "fork") == 0 && (cfg->images = strdup(plan->images)) == NULL) rc = -ENOMEM;
  if (spec->on_fork != NULL && (cfg->on_fork = strdup(spec->on_fork)) == NULL) rc = -ENOMEM;
  for (size_t i = 0; i < nlowers && rc == 0; i++) rc = sl_strv_push(&cfg->lowers, &cfg->nlowers, lowers[i]);
  for (const char *const *e = spec->env; e && *e && rc == 0; e++) rc = sl_strv_push(&cfg->env, &cfg->nenv, *e);
  cfg->limits = (sl_cgroup_limits){info->memory_bytes, info->pids_max, info->cpu_shares, info->cpus};
  cfg->timeout_ms = info->timeout_ms;
  cfg->on_timeout = info->on_timeout;
  cfg->auto_kill = info->auto_kill;
  if (!cfg->id || !cfg->home || !cfg->root || !cfg->upper || !cfg->work ||
      !cfg->hostname || !cfg->cwd || !cfg->launch)
    rc = -ENOMEM;
  return rc;
}

/* A row records its cgroups once the sandbox runs; before that they are
 * where the monitor puts them for this host's layout. */
static void fill_cgroups(const char *id, sl_sandbox_info *info) {
  if (info->cgroups[0]) return;
  sl_cgroup_layout layout;
  sl_error ignored = {0};
  if (sl_cgroup_detect(&layout, &ignored) < 0) return;
  sl_cgroup cg;
  sl_cgroup_for(&layout, id, &cg);
  sl_cgroup_format(&cg, info->cgroups, sizeof info->cgroups);
}

/* After a failed start, release whatever the monitor left (it normally
 * cleans up before it reports) and drop the row. */
static void discard(sl_sandboxes *h, const char *id) {
  sl_sandbox_info info;
  sl_error ignored = {0};
  char dir[SL_SANDBOX_PATH_MAX];
  sl_sandbox_dir(h, id, dir, sizeof dir);
  pid_t monitor = sl_monitor_find(h->home, id);
  if (monitor > 0) kill(monitor, SIGKILL);
  if (sl_sbstore_get(h->store, id, &info, &ignored) == 0) {
    fill_cgroups(id, &info);
    sl_proc_release(&info, dir, &ignored);
  }
  sl_sbstore_delete(h->store, id, &ignored);
}

static int64_t tree_size(const char *path);

/* Make the catalog's template `name` the one built from `layer`, unless it
 * is already. Concurrent creators wait for the one that registers it. */
static int register_template(sl_catalog *cat, const char *name, const sl_template_layer *layer,
                             sl_error *err) {
  for (int waited = 0; waited <= 30000; waited += 50) {
    sl_template tpl = {0};
    int rc = sl_catalog_template_get(cat, name, &tpl, err);
    int current = rc == 0 && strcmp(tpl.spec_hash, layer->digest) == 0;
    sl_template_clear(&tpl);
    if (current) return 0;
    if (rc < 0 && err->code != ENOENT) return rc;

    char build[SL_ID_SIZE];
    if (sl_id_new(SL_ID_TEMPLATE, build, err) < 0) return -err->code;
    rc = sl_catalog_template_begin(cat, build, name, layer->digest, err);
    if (rc < 0 && err->code != EBUSY) return rc;
    if (rc == 0) {
      rc = sl_catalog_template_add_layer(cat, build, layer->layer_id, layer->path,
                                         tree_size(layer->path), err);
      if (rc == 0) rc = sl_catalog_template_finish(cat, build, NULL, err);
      if (rc < 0) {
        sl_error ignored = {0};
        sl_catalog_template_delete(cat, build, NULL, &ignored);
      }
      return rc;
    }
    struct timespec ts = {0, 50 * 1000000L}; /* another creator is registering it */
    nanosleep(&ts, NULL);
  }
  return sl_error_set(err, ETIMEDOUT, "template %s: another process kept registering it", name);
}

static __thread int64_t tree_bytes;

static int add_size(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)path;
  (void)ftw;
  if (type == FTW_F) tree_bytes += st->st_size;
  return 0;
}

static int64_t tree_size(const char *path) {
  tree_bytes = 0;
  nftw(path, add_size, 32, FTW_PHYS | FTW_MOUNT);
  return tree_bytes;
}

static int prepare_agent_layer(sl_sandboxes *h, char *agent_layer, sl_error *err) {
  char agent[PATH_MAX];
  if (sl_find_binary("sandlot-agent", agent, sizeof agent, err) < 0) return -err->code;
  return sl_agent_layer_prepare(h->home, agent, agent_layer, SL_SANDBOX_PATH_MAX, err);
}

int sl_backend_prepare_template(sl_sandboxes *h, const sl_create_spec *spec,
                                sl_template_layer *out, sl_error *err) {
  const char *name = spec->template_name ? spec->template_name : SL_TEMPLATE_DEFAULT;
  const sl_template_spec *tspec = sl_template_builtin(name);
  if (sl_template_prepare(h->home, tspec, h->progress, h->progress_data, out, err) < 0)
    return -err->code;
  if (register_template(sl_sbstore_catalog(h->store), name, out, err) < 0)
    return sl_error_wrap(err, "record template %s", name);
  return 0;
}

static int prepare_layers(sl_sandboxes *h, const sl_create_spec *spec, char *agent_layer,
                          sl_error *err) {
  sl_template_layer tl;
  if (sl_backend_prepare_template(h, spec, &tl, err) < 0) return -err->code;
  return prepare_agent_layer(h, agent_layer, err);
}

/* Plan a sandbox made from `spec->snapshot`. A full snapshot is forked
 * on the agent layer its images were taken with, because the restored
 * agent maps that binary. A filesystem-only one boots the current agent. */
static int plan_from_snapshot(sl_sandboxes *h, const sl_create_spec *spec, launch_plan *plan,
                              sl_error *err) {
  sl_snapshot sn = {0};
  int rc = sl_catalog_snapshot_resolve(sl_sbstore_catalog(h->store), spec->snapshot, &sn, err);
  if (rc < 0) return rc;
  snprintf(plan->snapshot_id, sizeof plan->snapshot_id, "%s", sn.id);
  snprintf(plan->source_id, sizeof plan->source_id, "%s", sn.source_sandbox_id);
  if (sn.kind == SL_SNAPSHOT_FULL) {
    plan->mode = "fork";
    snprintf(plan->images, sizeof plan->images, "%s", sn.image_dir);
    rc = sl_snapshot_agent_layer(sl_sbstore_store(h->store), sn.id, plan->agent_layer,
                                 sizeof plan->agent_layer, err);
  } else if (spec->on_fork != NULL) {
    rc = sl_error_set(err, EINVAL, "on_fork needs a snapshot with memory; %s is filesystem only",
                      sn.id);
  } else {
    rc = prepare_agent_layer(h, plan->agent_layer, err);
  }
  sl_snapshot_clear(&sn);
  return rc;
}

/* The overlay's lower layers, top first: the agent's, then the stack of
 * the sandbox's base layer from the catalog. */
static char **lower_layers(sl_sandboxes *h, const char *agent_layer, const char *base,
                           size_t *count, sl_error *err) {
  sl_layer_list stack = {0};
  char **lowers = NULL;
  *count = 0;
  if (sl_catalog_layer_stack(sl_sbstore_catalog(h->store), base, &stack, err) < 0) return NULL;
  int rc = sl_strv_push(&lowers, count, agent_layer);
  for (size_t i = 0; rc == 0 && i < stack.count; i++) rc = sl_strv_push(&lowers, count, stack.items[i].path);
  sl_layer_list_free(&stack);
  if (rc < 0) {
    sl_strv_free(lowers);
    sl_error_set(err, ENOMEM, "out of memory");
    return NULL;
  }
  return lowers;
}

int sl_proc_start_monitor(sl_sandboxes *h, const char *id, int auto_kill, sl_error *err) {
  return sl_monitor_start(h->home, id, NULL, auto_kill, READY_TIMEOUT_MS, err);
}

static int start(sl_sandboxes *h, const sl_create_spec *spec, const sl_sandbox_info *info,
                 const launch_plan *plan, sl_error *err) {
  char dir[SL_SANDBOX_PATH_MAX], path[SL_SANDBOX_PATH_MAX + 16];
  size_t nlowers;
  char **lowers = lower_layers(h, plan->agent_layer, info->base_layer_id, &nlowers, err);
  if (lowers == NULL) return -err->code;
  sl_proc_config cfg;
  int rc = build_config(h, spec, info, plan, lowers, nlowers, &cfg);
  sl_strv_free(lowers);
  if (rc < 0) {
    sl_proc_config_free(&cfg);
    return sl_error_set(err, ENOMEM, "out of memory");
  }
  sl_sandbox_dir(h, info->id, dir, sizeof dir);
  snprintf(path, sizeof path, "%s/config", dir);
  rc = sl_proc_config_write(path, &cfg, err);
  sl_proc_config_free(&cfg);
  if (rc < 0) return rc;

  return sl_proc_start_monitor(h, info->id, spec->auto_kill, err);
}

/* The creator takes the sandbox's op.lock from the insert until the
 * monitor reports. gc finds the lock taken and so leaves a row in
 * "creating" without a monitor alone, because it is being started. */
static int proc_create(sl_sandboxes *h, const sl_create_spec *spec, sl_sandbox_info *out,
                       sl_error *err) {
  char id[SL_ID_SIZE], dir[SL_SANDBOX_PATH_MAX];
  launch_plan plan = {.mode = "fresh"};
  int rc = spec->snapshot != NULL ? plan_from_snapshot(h, spec, &plan, err)
                                  : prepare_layers(h, spec, plan.agent_layer, err);
  if (rc < 0) return sl_error_wrap(err, "create sandbox");
  if (sl_sbstore_new_id(id, err) < 0) return -err->code;

  sl_sandbox_info info;
  fill_record(spec, id, &info);
  inherit_limits(h, spec, plan.source_id, &info);
  snprintf(info.source_snapshot_id, sizeof info.source_snapshot_id, "%s", plan.snapshot_id);
  if (sl_sbstore_insert(h->store, &info, err) < 0) return sl_error_wrap(err, "create sandbox");
  sl_sandbox_dir(h, id, dir, sizeof dir);
  int lock = sl_op_lock(dir, 0, err);
  int64_t started = sl_monotonic_ms();
  if (lock < 0 || start(h, spec, &info, &plan, err) < 0) {
    discard(h, id);
    sl_op_unlock(lock);
    return sl_error_wrap(err, "create sandbox %s", id);
  }
  sl_op_unlock(lock);
  if (sl_sbstore_get(h->store, id, out, err) < 0) return sl_error_wrap(err, "create sandbox %s", id);
  SL_INFO("sandbox.created", "sandbox=%s op=create template=%s snapshot=%s launch=%s "
          "init_pid=%d ms=%lld", id, out->template_name, plan.snapshot_id, plan.mode,
          (int)out->init_pid, (long long)(sl_monotonic_ms() - started));
  return 0;
}

/* Kill */

void sl_proc_monitor_socket(const sl_sandboxes *h, const char *id, char *buf, size_t len) {
  char dir[SL_SANDBOX_PATH_MAX];
  sl_sandbox_dir(h, id, dir, sizeof dir);
  snprintf(buf, len, "%s/monitor.sock", dir);
}

/* The monitor of a sandbox: the recorded one if it still runs, else any
 * found by its command line (a sandbox still being created has none
 * recorded). */
pid_t sl_proc_live_monitor(const sl_sandboxes *h, const sl_sandbox_info *info) {
  if (sl_monitor_is(info->monitor_pid, h->home, info->id)) return info->monitor_pid;
  return sl_monitor_find(h->home, info->id);
}

void sl_proc_wait_exit(pid_t pid, int timeout_ms) {
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) return;
  struct pollfd p = {fd, POLLIN, 0};
  poll(&p, 1, timeout_ms);
  close(fd);
}

/* Without a monitor, do its release here and record the end. */
static int release_orphan(sl_sandboxes *h, sl_sandbox_info *info, const char *reason,
                          sl_error *err) {
  char dir[SL_SANDBOX_PATH_MAX];
  sl_sandbox_dir(h, info->id, dir, sizeof dir);
  fill_cgroups(info->id, info);
  if (sl_proc_release(info, dir, err) < 0) return -err->code;
  int rc = sl_sbstore_set_ended(h->store, info->id, -1, 0, reason, err);
  return rc < 0 && err->code == ESRCH ? 0 : rc;
}

static int proc_kill(sl_sandboxes *h, const sl_sandbox_info *info, sl_error *err) {
  char sock[SL_SANDBOX_PATH_MAX + 16];
  sl_proc_monitor_socket(h, info->id, sock, sizeof sock);
  pid_t monitor = sl_proc_live_monitor(h, info);
  if (monitor > 0) {
    int rc = sl_monitor_request(sock, "kill", MONITOR_REQUEST_TIMEOUT_MS, NULL, 0, err);
    if (rc == 0) {
      sl_proc_wait_exit(monitor, 5000);
      return 0;
    }
    if (sl_monitor_is(monitor, h->home, info->id)) return rc;
    sl_sandbox_info now;
    if (sl_sbstore_get(h->store, info->id, &now, err) == 0 && now.state == SL_SANDBOX_DEAD)
      return sl_error_set(err, ESRCH, "sandbox has ended (%s): %s", now.end_reason, now.id);
  }
  /* A paused sandbox has no monitor by design; any other has lost it. */
  if (info->state == SL_SANDBOX_PAUSED)
    SL_DEBUG("sandbox.kill_paused", "sandbox=%s op=kill note=\"no monitor while paused, releasing "
             "directly\"", info->id);
  else
    SL_WARN("sandbox.kill_orphan", "sandbox=%s op=kill note=\"monitor gone, releasing directly\"",
            info->id);
  sl_sandbox_info copy = *info;
  return release_orphan(h, &copy, "killed", err);
}

/* Freeze and thaw */

static int change_freezer(sl_sandboxes *h, const sl_sandbox_info *info, int freeze, sl_error *err) {
  sl_sandbox_state want = freeze ? SL_SANDBOX_FROZEN : SL_SANDBOX_RUNNING;
  if (info->state == want) return 0;
  if (info->state == SL_SANDBOX_CREATING)
    return sl_error_set(err, EBUSY, "sandbox is still being created: %s", info->id);
  if (info->state == SL_SANDBOX_PAUSED)
    return sl_error_set(err, EBUSY, "sandbox is paused (resume it first): %s", info->id);
  sl_cgroup cg;
  if (sl_cgroup_parse(info->cgroups, &cg, err) < 0) return -err->code;
  int rc = freeze ? sl_cgroup_freeze(&cg, err) : sl_cgroup_thaw(&cg, err);
  if (rc < 0) return rc;
  rc = sl_sbstore_set_state(h->store, info->id, want, err);
  if (rc < 0 && freeze) {
    sl_error ignored = {0};
    sl_cgroup_thaw(&cg, &ignored);
  }
  return rc;
}

static int proc_freeze(sl_sandboxes *h, const sl_sandbox_info *info, sl_error *err) {
  return change_freezer(h, info, 1, err);
}

static int proc_thaw(sl_sandboxes *h, const sl_sandbox_info *info, sl_error *err) {
  return change_freezer(h, info, 0, err);
}

static int proc_set_timeout(sl_sandboxes *h, const sl_sandbox_info *info, int64_t seconds,
                            sl_error *err) {
  char sock[SL_SANDBOX_PATH_MAX + 16], request[64];
  sl_proc_monitor_socket(h, info->id, sock, sizeof sock);
  snprintf(request, sizeof request, "set_timeout %lld", (long long)seconds);
  /* A paused sandbox has no monitor; its timeout counts from the resume. */
  if (info->state == SL_SANDBOX_PAUSED)
    return sl_sbstore_set_deadline(h->store, info->id, seconds * 1000, 0, info->on_timeout, err);
  if (sl_proc_live_monitor(h, info) <= 0)
    return sl_error_set(err, ESRCH, "monitor of %s is gone (run gc)", info->id);
  return sl_monitor_request(sock, request, MONITOR_REQUEST_TIMEOUT_MS, NULL, 0, err);
}

/* gc */

static int has_mounts(const char *dir) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (f == NULL) return 0;
  size_t cap = 1 << 20, n = 0;
  char *text = malloc(cap);
  if (text) text[fread(text, 1, cap - 1, f)] = '\0';
  fclose(f);
  char **mounts = text ? sl_mounts_below(text, dir, &n) : NULL;
  free(text);
  sl_strv_free(mounts);
  return n > 0;
}

/* A creator holds op.lock while it starts a sandbox; gc must not take
 * such a sandbox for a crashed one. */
static int being_created(const char *dir) {
  sl_error ignored = {0};
  int lock = sl_op_lock(dir, 0, &ignored);
  sl_op_unlock(lock);
  return lock < 0;
}

/* A snapshot freezes the cgroup and thaws it when CRIU is done; a host
 * that died in between leaves a running sandbox frozen. With nobody
 * holding op.lock, a frozen cgroup of a sandbox recorded as running is
 * such a leftover. Its agent may still hold new connections off after
 * the quiesce (for up to SL_AGENT_DUMP_HOLD_MS), so that ends too. */
static int thaw_leftover(const sl_sandbox_info *info, const char *dir, int *cleaned,
                         sl_error *err) {
  sl_cgroup cg;
  if (info->state != SL_SANDBOX_RUNNING || sl_cgroup_parse(info->cgroups, &cg, err) < 0 ||
      !sl_cgroup_exists(&cg) || !sl_cgroup_is_frozen(&cg))
    return 0;
  sl_error busy = {0};
  int lock = sl_op_lock(dir, 0, &busy);
  if (lock < 0) return 0; /* an operation is under way */
  int rc = 0;
  sl_error ignored = {0};
  sl_agent_end_quiesce(info->init_pid, info->init_start, &ignored);
  if (sl_cgroup_is_frozen(&cg)) {
    SL_WARN("sandbox.gc_thaw", "sandbox=%s op=gc note=\"running but frozen, thawing\"", info->id);
    rc = sl_cgroup_thaw(&cg, err);
    *cleaned = rc == 0;
  }
  sl_op_unlock(lock);
  return rc;
}

/* A paused sandbox has no monitor and keeps its files. A pause or resume
 * that crashed may have left mounts or cgroups; release those unless an
 * operation (a resume) holds the op.lock. */
static int gc_paused(const sl_sandbox_info *info, const char *dir, int *cleaned, sl_error *err) {
  sl_sandbox_info copy = *info;
  fill_cgroups(info->id, &copy);
  sl_cgroup cg;
  int leftovers = has_mounts(dir) || (sl_cgroup_parse(copy.cgroups, &cg, err) == 0 &&
                                      sl_cgroup_exists(&cg));
  if (!leftovers || being_created(dir)) return 0;
  SL_WARN("sandbox.gc_paused", "sandbox=%s op=gc note=\"paused with mounts or cgroups left, "
          "releasing them\"", info->id);
  *cleaned = 1;
  return sl_proc_release_paused(&copy, dir, err);
}

static int proc_gc(sl_sandboxes *h, const sl_sandbox_info *info, int *cleaned, sl_error *err) {
  *cleaned = 0;
  int dead = info->state == SL_SANDBOX_DEAD;
  char dir[SL_SANDBOX_PATH_MAX];
  sl_sandbox_dir(h, info->id, dir, sizeof dir);
  if (info->state == SL_SANDBOX_PAUSED && sl_proc_live_monitor(h, info) <= 0)
    return gc_paused(info, dir, cleaned, err);
  if (!dead && sl_proc_live_monitor(h, info) > 0) return thaw_leftover(info, dir, cleaned, err);
  if (info->state == SL_SANDBOX_CREATING && being_created(dir)) return 0;

  sl_sandbox_info copy = *info;
  fill_cgroups(info->id, &copy);
  sl_cgroup cg;
  int leftovers = has_mounts(dir) || (sl_cgroup_parse(copy.cgroups, &cg, err) == 0 &&
                                      sl_cgroup_exists(&cg));
  if (dead && !leftovers) return 0;

  SL_WARN("sandbox.gc", "sandbox=%s op=gc state=%s note=\"monitor gone, releasing\"", info->id,
          sl_sandbox_state_name(info->state));
  *cleaned = 1;
  if (sl_proc_release(&copy, dir, err) < 0) return -err->code;
  if (info->state == SL_SANDBOX_CREATING) return sl_sbstore_delete(h->store, info->id, err);
  if (dead) return 0;
  int rc = sl_sbstore_set_ended(h->store, info->id, -1, 0, "monitor_lost", err);
  return rc < 0 && err->code == ESRCH ? 0 : rc;
}

/* Unmount what is mounted below sandboxes/<id>/ for ids without a row
 * (left by a crash between a mount and the row's removal). */
int sl_proc_gc_orphans(sl_sandboxes *h, int *count, sl_error *err) {
  char prefix[SL_SANDBOX_PATH_MAX];
  if (sl_path_format(prefix, sizeof prefix, err, "%s/sandboxes", h->home) < 0) return -err->code;
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (f == NULL) return sl_error_errno(err, errno, "read /proc/self/mountinfo");
  size_t cap = 1 << 20, n = 0;
  char *text = malloc(cap);
  if (text) text[fread(text, 1, cap - 1, f)] = '\0';
  fclose(f);
  char **mounts = text ? sl_mounts_below(text, prefix, &n) : NULL;
  free(text);
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    char id[SL_SANDBOX_ID_MAX] = "";
    const char *rest = mounts[i] + strlen(prefix);
    if (sscanf(rest, "/%15[^/]", id) != 1) continue;
    sl_sandbox_info info;
    sl_error lookup = {0};
    if (sl_sbstore_get(h->store, id, &info, &lookup) == 0 || lookup.code != ENOENT) continue;
    SL_WARN("sandbox.gc_mount", "sandbox=%s op=gc mount=%s note=\"no record, unmounting\"", id,
            mounts[i]);
    if (sl_overlay_unmount(mounts[i], err) < 0) rc = -err->code;
    else (*count)++;
  }
  sl_strv_free(mounts);
  return rc;
}

const sl_backend_ops sl_proc_backend = {
    .create = proc_create,
    .kill = proc_kill,
    .freeze = proc_freeze,
    .thaw = proc_thaw,
    .set_timeout = proc_set_timeout,
    .snapshot = sl_proc_snapshot,
    .pause = sl_proc_pause,
    .resume = sl_proc_resume,
    .rollback = sl_proc_rollback,
    .snapshot_delete = sl_proc_snapshot_delete,
    .gc = proc_gc,
};
