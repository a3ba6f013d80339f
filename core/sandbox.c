#include "sandbox.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "json_flat.h"
#include "layer_copy.h"
#include "log.h"
#include "oplock.h"
#include "sandbox_store.h"
#include "proc_util.h"
#include "run.h"
#include "size.h"
#include "template.h"

/* How long kill, freeze and thaw wait for another operation (a snapshot)
 * on the same sandbox before they fail with EBUSY. */
#define OP_LOCK_WAIT_MS 30000
/* Pending snapshots and snapshot folders without a source file younger
 * than this may belong to a take that is still starting; gc leaves them. */
#define GC_PENDING_AGE_MS 60000

const sl_backend_ops *sl_backend_ops_for(sl_backend backend, sl_error *err) {
  if (backend == SL_BACKEND_PROCESS) return &sl_proc_backend;
  if (backend == SL_BACKEND_VM) return &sl_vm_backend;
  sl_error_set(err, ENOTSUP, "backend not available: %s", sl_backend_name(backend));
  return NULL;
}

int sl_sandboxes_open(const char *home, sl_sandboxes **out, sl_error *err) {
  char quoted[SL_SUBJECT_MAX];
  if (home == NULL || home[0] != '/')
    return sl_error_set(err, EINVAL, "store path must be absolute: %s",
                        sl_subject(quoted, sizeof quoted, home));
  sl_sandboxes *h = calloc(1, sizeof *h);
  if (h == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  /* The store and catalog name the store in their messages. */
  if (sl_sbstore_open(home, &h->store, err) < 0) {
    free(h);
    return -err->code;
  }
  /* The store's root, normalized: monitors are found by it. */
  snprintf(h->home, sizeof h->home, "%s", sl_sbstore_store(h->store)->root);
  *out = h;
  return 0;
}

void sl_sandboxes_close(sl_sandboxes *h) {
  if (h == NULL) return;
  sl_sbstore_close(h->store);
  free(h);
}

const char *sl_sandboxes_home(const sl_sandboxes *h) { return h->home; }

void sl_sandboxes_set_progress(sl_sandboxes *h, sl_line_fn fn, void *data) {
  h->progress = fn;
  h->progress_data = data;
}

void sl_sandbox_dir(const sl_sandboxes *h, const char *id, char *buf, size_t len) {
  /* Fits SL_SANDBOX_PATH_MAX: the root is at most SL_STORE_ROOT_MAX bytes
   * and callers pass ids the store validated. */
  snprintf(buf, len, "%.*s/sandboxes/%.*s", SL_STORE_ROOT_MAX, h->home, SL_SANDBOX_ID_MAX - 1, id);
}

/* Spec checks */

static int check_pairs(const char *what, const char *const *list, sl_error *err) {
  for (const char *const *p = list; p && *p; p++) {
    const char *eq = strchr(*p, '=');
    if (eq == NULL || eq == *p)
      return sl_error_set(err, EINVAL, "invalid %s entry: \"%.200s\" (expected NAME=value)", what, *p);
    for (const char *c = *p; c < eq; c++)
      if (isspace((unsigned char)*c) || *c == '\0')
        return sl_error_set(err, EINVAL, "invalid %s name: \"%.*s\"", what, (int)(eq - *p), *p);
  }
  return 0;
}

/* The catalog's label rules: keys of 1..63 characters from A-Z a-z 0-9 .
 * _ / -, values of at most 255 bytes, at most 64 labels. */
int sl_labels_check(const char *const *labels, sl_error *err) {
  int count = 0;
  for (const char *const *p = labels; p && *p; p++, count++) {
    const char *eq = strchr(*p, '=');
    size_t key = eq ? (size_t)(eq - *p) : 0;
    int ok = key >= 1 && key <= SL_LABEL_KEY_MAX && strlen(eq + 1) <= SL_LABEL_VALUE_MAX &&
             strchr(eq + 1, '\n') == NULL;
    for (size_t i = 0; ok && i < key; i++)
      ok = isalnum((unsigned char)(*p)[i]) || strchr("._/-", (*p)[i]) != NULL;
    if (!ok)
      return sl_error_set(err, EINVAL,
                          "invalid label: \"%.200s\" (expected key=value, the key 1-63 of "
                          "A-Z a-z 0-9 . _ / -, the value at most 255 bytes)",
                          *p);
  }
  if (count > SL_LABELS_MAX)
    return sl_error_set(err, EINVAL, "invalid labels: %d given, at most %d", count, SL_LABELS_MAX);
  return 0;
}

char *sl_labels_json(const char *const *labels) {
  size_t len = 1;
  for (const char *const *p = labels; p && *p; p++) len += strlen(*p) + 1;
  char *lines = malloc(len);
  if (lines == NULL) return NULL;
  lines[0] = '\0';
  for (const char *const *p = labels; p && *p; p++) {
    strcat(lines, *p);
    strcat(lines, "\n");
  }
  char *json = sl_json_from_lines(lines);
  free(lines);
  return json;
}

/* RFC 1123 host name characters, 1..64 of them. */
static int check_hostname(const char *name, sl_error *err) {
  size_t n = strlen(name);
  int ok = n > 0 && n <= 64 && name[0] != '-' && name[0] != '.';
  for (const char *c = name; ok && *c; c++)
    ok = isalnum((unsigned char)*c) || *c == '-' || *c == '.';
  return ok ? 0 : sl_error_set(err, EINVAL, "invalid hostname: \"%.100s\" (1-64 of a-z, 0-9, '-', '.')", name);
}

static int check_limits(const sl_create_spec *spec, sl_error *err) {
  uint64_t bytes;
  if (spec->memory && sl_parse_size(spec->memory, &bytes, err) < 0) return -EINVAL;
  if (spec->memory && bytes < 16ULL << 20)
    return sl_error_set(err, EINVAL, "invalid memory limit: \"%s\" (minimum 16M)", spec->memory);
  if (spec->memory && bytes > INT64_MAX)
    return sl_error_set(err, EINVAL, "invalid memory limit: \"%s\" (too large: at most %lld bytes)",
                        spec->memory, (long long)INT64_MAX);
  if (spec->pids < 0 || spec->pids > SL_PIDS_MAX)
    return sl_error_set(err, EINVAL, "invalid pids limit: %lld (expected a whole number from 1 to %d)",
                        (long long)spec->pids, SL_PIDS_MAX);
  if (spec->cpu_shares != 0 && (spec->cpu_shares < 2 || spec->cpu_shares > SL_CPU_SHARES_MAX))
    return sl_error_set(err, EINVAL,
                        "invalid cpu_shares: %lld (expected a whole number from 2 to %d)",
                        (long long)spec->cpu_shares, SL_CPU_SHARES_MAX);
  if (!(spec->cpus >= 0 && spec->cpus <= 1024) || (spec->cpus > 0 && spec->cpus < 0.01))
    return sl_error_set(err, EINVAL, "invalid cpus: %g (expected 0.01 to 1024, or 0 for no quota)",
                        spec->cpus);
  if (spec->timeout_sec < 0 || spec->timeout_sec > SL_TIMEOUT_MAX_SEC)
    return sl_error_set(err, EINVAL, "invalid timeout: %lld (expected whole seconds from 0 to %lld)",
                        (long long)spec->timeout_sec, SL_TIMEOUT_MAX_SEC);
  return 0;
}

int sl_sandbox_spec_check(const sl_create_spec *spec, sl_error *err) {
  if (sl_backend_ops_for(spec->backend, err) == NULL) return -err->code;
  const char *tname = spec->template_name ? spec->template_name : SL_TEMPLATE_DEFAULT;
  char quoted[SL_SUBJECT_MAX];
  if (sl_template_builtin(tname) == NULL)
    return sl_error_set(err, ENOENT, "template not found: %s", sl_subject(quoted, sizeof quoted, tname));
  if (check_limits(spec, err) < 0) return -err->code;
  if ((unsigned)spec->on_timeout > SL_ON_TIMEOUT_PAUSE_FS)
    return sl_error_set(err, EINVAL, "invalid on_timeout: %d (expected kill, pause or pause_fs)",
                        (int)spec->on_timeout);
  if (spec->on_fork != NULL && spec->snapshot == NULL)
    return sl_error_set(err, EINVAL, "on_fork needs a snapshot to fork");
  if (check_pairs("env", spec->env, err) < 0 || sl_labels_check(spec->labels, err) < 0)
    return -err->code;
  if (spec->hostname && check_hostname(spec->hostname, err) < 0) return -err->code;
  if (spec->cwd && spec->cwd[0] != '/')
    return sl_error_set(err, EINVAL, "invalid cwd: \"%.200s\" (must be absolute)", spec->cwd);
  return 0;
}

/* Reject the options a sandbox made from `sn` cannot honour. A fork of a
 * full snapshot restores the agent from memory, with the environment and
 * working directory it had at the snapshot. A filesystem-only snapshot
 * boots a fresh agent, which takes both. */
static int check_fork_options(const sl_create_spec *spec, const sl_snapshot *sn, sl_error *err) {
  /* SL_BACKEND_PROCESS is also the value of an unset backend, which
   * takes the snapshot's. */
  if (spec->backend != SL_BACKEND_PROCESS && spec->backend != sn->backend)
    return sl_error_set(err, EINVAL,
                        "invalid backend: %s (snapshot %s is a %s snapshot, and a sandbox made "
                        "from a snapshot runs on the snapshot's backend)",
                        sl_backend_name(spec->backend), sn->id, sl_backend_name(sn->backend));
  if (sn->kind != SL_SNAPSHOT_FULL) return 0;
  if (spec->env != NULL && spec->env[0] != NULL)
    return sl_error_set(err, EINVAL,
                        "env does not apply to a fork of %s: forks keep the snapshot's "
                        "environment (pass env to each exec instead)", sn->id);
  if (spec->cwd != NULL)
    return sl_error_set(err, EINVAL,
                        "cwd does not apply to a fork of %s: forks keep the snapshot's working "
                        "directory (pass cwd to each exec instead)", sn->id);
  return 0;
}

/* Calls */

int sl_sandbox_create(sl_sandboxes *h, const sl_create_spec *spec, sl_sandbox_info *out,
                      sl_error *err) {
  if (sl_sandbox_spec_check(spec, err) < 0) return sl_error_wrap(err, "create sandbox");
  if (spec->snapshot == NULL) return sl_backend_ops_for(spec->backend, err)->create(h, spec, out, err);

  /* A sandbox made from a snapshot runs on the snapshot's backend. */
  sl_snapshot sn = {0};
  if (sl_catalog_snapshot_resolve(sl_sbstore_catalog(h->store), spec->snapshot, &sn, err) < 0)
    return sl_error_wrap(err, "create sandbox");
  int rc = check_fork_options(spec, &sn, err);
  sl_create_spec copy = *spec;
  copy.backend = sn.backend;
  sl_snapshot_clear(&sn);
  if (rc < 0) return sl_error_wrap(err, "create sandbox");
  const sl_backend_ops *ops = sl_backend_ops_for(copy.backend, err);
  if (ops == NULL) return sl_error_wrap(err, "create sandbox");
  /* A backend without snapshots cannot start from one either. */
  if (ops->snapshot == NULL)
    return sl_error_set(err, ENOTSUP, "create sandbox: sandboxes from snapshots are not supported "
                        "by the %s backend", sl_backend_name(copy.backend));
  return ops->create(h, &copy, out, err);
}

int sl_sandbox_get(sl_sandboxes *h, const char *id, sl_sandbox_info *out, sl_error *err) {
  return sl_sbstore_get(h->store, id, out, err);
}

int sl_sandbox_list(sl_sandboxes *h, sl_sandbox_info **out, size_t *count, sl_error *err) {
  return sl_sbstore_list(h->store, out, count, err);
}

/* Whether `err` is about the sandbox itself ("sandbox is paused (resume
 * it first): ID"), which the error contract leaves without an operation
 * in front, as it does "sandbox has ended". */
static int about_sandbox(const sl_error *err, const char *id) {
  size_t length = strlen(err->msg), id_length = strlen(id);
  return strncmp(err->msg, "sandbox ", 8) == 0 && length > id_length + 2 &&
         strncmp(err->msg + length - id_length - 2, ": ", 2) == 0 &&
         strcmp(err->msg + length - id_length, id) == 0;
}

int sl_sandbox_locked(sl_sandboxes *h, const char *id, const char *what, int wait_ms,
                      sl_op_fn fn, void *arg, sl_error *err) {
  sl_sandbox_info info;
  if (sl_sbstore_get(h->store, id, &info, err) < 0) return -err->code;
  char dir[SL_SANDBOX_PATH_MAX];
  sl_sandbox_dir(h, id, dir, sizeof dir);
  int lock = sl_op_lock(dir, wait_ms, err);
  if (lock < 0) return sl_error_wrap_subject(err, what, id);
  int rc = sl_sbstore_get(h->store, id, &info, err);
  if (rc == 0 && info.state == SL_SANDBOX_DEAD) {
    sl_op_unlock(lock);
    return sl_error_set(err, ESRCH, "sandbox has ended (%s): %s", info.end_reason, id);
  }
  if (rc == 0) rc = fn(h, &info, arg, err);
  sl_op_unlock(lock);
  if (rc < 0 && about_sandbox(err, id)) return rc;
  if (rc < 0) return sl_error_wrap_subject(err, what, id);
  SL_INFO("sandbox.op", "sandbox=%s op=%s", id, what);
  return 0;
}

static int do_kill(sl_sandboxes *h, const sl_sandbox_info *info, void *arg, sl_error *err) {
  (void)arg;
  const sl_backend_ops *ops = sl_backend_ops_for(info->backend, err);
  return ops ? ops->kill(h, info, err) : -err->code;
}

static int do_freeze(sl_sandboxes *h, const sl_sandbox_info *info, void *arg, sl_error *err) {
  const sl_backend_ops *ops = sl_backend_ops_for(info->backend, err);
  if (ops == NULL) return -err->code;
  return *(int *)arg ? ops->freeze(h, info, err) : ops->thaw(h, info, err);
}

static int do_set_timeout(sl_sandboxes *h, const sl_sandbox_info *info, void *arg, sl_error *err) {
  const sl_backend_ops *ops = sl_backend_ops_for(info->backend, err);
  return ops ? ops->set_timeout(h, info, *(int64_t *)arg, err) : -err->code;
}

int sl_sandbox_kill(sl_sandboxes *h, const char *id, sl_error *err) {
  return sl_sandbox_locked(h, id, "kill", OP_LOCK_WAIT_MS, do_kill, NULL, err);
}

int sl_sandbox_remove(sl_sandboxes *h, const char *id, sl_error *err) {
  sl_sandbox_info info;
  if (sl_sbstore_get(h->store, id, &info, err) < 0) return -err->code;
  if (info.state != SL_SANDBOX_DEAD)
    return sl_error_set(err, EBUSY, "sandbox is %s (kill it first): %s",
                        sl_sandbox_state_name(info.state), id);
  char dir[SL_SANDBOX_PATH_MAX];
  sl_sandbox_dir(h, id, dir, sizeof dir);
  if (sl_catalog_sandbox_delete(sl_sbstore_catalog(h->store), id, err) < 0)
    return sl_error_wrap_subject(err, "remove", id);
  /* Only files are left: the monitor or gc released the mounts. */
  if (sl_remove_tree(dir, err) < 0) return sl_error_wrap_subject(err, "remove", id);
  SL_INFO("sandbox.removed", "sandbox=%s op=remove", id);
  return 0;
}

int sl_sandbox_freeze(sl_sandboxes *h, const char *id, sl_error *err) {
  int frozen = 1;
  return sl_sandbox_locked(h, id, "freeze", OP_LOCK_WAIT_MS, do_freeze, &frozen, err);
}

int sl_sandbox_thaw(sl_sandboxes *h, const char *id, sl_error *err) {
  int frozen = 0;
  return sl_sandbox_locked(h, id, "thaw", OP_LOCK_WAIT_MS, do_freeze, &frozen, err);
}

int sl_sandbox_set_timeout(sl_sandboxes *h, const char *id, int64_t seconds, sl_error *err) {
  if (seconds < 0 || seconds > SL_TIMEOUT_MAX_SEC)
    return sl_error_set(err, EINVAL, "invalid timeout: %lld (expected whole seconds from 0 to %lld)",
                        (long long)seconds, SL_TIMEOUT_MAX_SEC);
  /* The monitor serializes timeout changes itself, so no op.lock. */
  sl_sandbox_info info;
  if (sl_sbstore_get(h->store, id, &info, err) < 0) return -err->code;
  if (info.state == SL_SANDBOX_DEAD)
    return sl_error_set(err, ESRCH, "sandbox has ended (%s): %s", info.end_reason, id);
  if (do_set_timeout(h, &info, &seconds, err) < 0) return sl_error_wrap_subject(err, "set_timeout", id);
  return 0;
}

/* Delete the layers nothing uses any more (those of deleted snapshots
 * that forks still mounted, for example) and their folders. */
static int collect_layers(sl_sandboxes *h, int *count, sl_error *err) {
  sl_layer_list removed = {0};
  int rc = sl_catalog_layer_collect(sl_sbstore_catalog(h->store), &removed, err);
  for (size_t i = 0; rc == 0 && i < removed.count; i++) {
    sl_error one = {0};
    if (sl_layer_remove(removed.items[i].path, &one) < 0)
      SL_WARN("sandbox.gc_layer_failed", "layer=%s error=\"%s\"", removed.items[i].id, one.msg);
    else
      SL_INFO("sandbox.gc_layer", "layer=%s path=%s", removed.items[i].id, removed.items[i].path);
  }
  *count = (int)removed.count;
  sl_layer_list_free(&removed);
  return rc;
}

int sl_sandbox_gc(sl_sandboxes *h, sl_gc_counts *counts, sl_error *err) {
  sl_gc_counts found = {0};
  sl_sandbox_info *items;
  size_t count;
  if (counts) *counts = found;
  if (sl_sbstore_list(h->store, &items, &count, err) < 0) return sl_error_wrap(err, "gc");
  int rc = 0;
  for (size_t i = 0; i < count; i++) {
    const sl_backend_ops *ops = sl_backend_ops_for(items[i].backend, err);
    int one = 0;
    if (ops == NULL || ops->gc(h, &items[i], &one, err) < 0) {
      SL_WARN("sandbox.gc_failed", "sandbox=%s error=\"%s\"", items[i].id, err->msg);
      if (rc == 0) rc = -err->code;
    }
    found.sandboxes += one;
  }
  free(items);
  if (sl_proc_gc_orphans(h, &found.mounts, err) < 0 && rc == 0) rc = -err->code;
  if (sl_snapshot_gc(sl_sbstore_catalog(h->store), sl_sbstore_store(h->store),
                     GC_PENDING_AGE_MS, &found.snapshots, err) < 0 && rc == 0)
    rc = -err->code;
  if (collect_layers(h, &found.layers, err) < 0 && rc == 0) rc = -err->code;
  if (counts) *counts = found;
  return rc < 0 ? sl_error_wrap(err, "gc") : 0;
}

int sl_sandbox_remove_ended(sl_sandboxes *h, int64_t age_ms, int *removed, sl_error *err) {
  sl_sandbox_info *items;
  size_t count;
  if (removed) *removed = 0;
  if (sl_sbstore_list(h->store, &items, &count, err) < 0) return -err->code;
  int64_t cutoff = sl_now_ms() - (age_ms > 0 ? age_ms : 0);
  int rc = 0;
  for (size_t i = 0; i < count; i++) {
    if (items[i].state != SL_SANDBOX_DEAD || items[i].ended_at_ms > cutoff) continue;
    sl_error one = {0};
    if (sl_sandbox_remove(h, items[i].id, &one) < 0) {
      SL_WARN("sandbox.remove_failed", "sandbox=%s error=\"%s\"", items[i].id, one.msg);
      if (rc == 0) rc = sl_error_set(err, one.code, "%s", one.msg);
      continue;
    }
    if (removed) (*removed)++;
  }
  free(items);
  return rc;
}
