/* The sandbox API's snapshot calls: snapshot, pause, resume, connect,
 * rollback, parallel forks, and listing and deleting snapshots. Each
 * state change runs under the sandbox's op.lock and dispatches on its
 * backend. */
#include "sandbox.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "log.h"
#include "sandbox_store.h"

/* How long resume and rollback wait for another operation. */
#define OP_LOCK_WAIT_MS 30000
#define CREATE_MANY_MAX 64
/* Maximum number of source snapshots a rollback walks to find ancestors. */
#define LINEAGE_MAX_DEPTH 1000

static sl_catalog *catalog_of(sl_sandboxes *h) { return sl_sbstore_catalog(h->store); }

/* Fail unless `info` is running or frozen. */
static int check_live(const sl_sandbox_info *info, sl_error *err) {
  if (info->state == SL_SANDBOX_RUNNING || info->state == SL_SANDBOX_FROZEN) return 0;
  if (info->state == SL_SANDBOX_CREATING)
    return sl_error_set(err, EBUSY, "sandbox is still being created: %s", info->id);
  if (info->state == SL_SANDBOX_PAUSED)
    return sl_error_set(err, EBUSY, "sandbox is paused (resume it first): %s", info->id);
  return sl_error_set(err, ESRCH, "sandbox has ended (%s): %s", info->end_reason, info->id);
}

/* ENOTSUP for an operation a backend does not have (yet). */
static int unsupported(sl_backend backend, const char *what, sl_error *err) {
  return sl_error_set(err, ENOTSUP, "%s is not supported by the %s backend", what,
                      sl_backend_name(backend));
}

/* Snapshot */

typedef struct snapshot_args {
  const sl_snapshot_opts *opts;
  sl_snapshot *out;
  sl_snapshot_timing *timing;
} snapshot_args;

static int do_snapshot(sl_sandboxes *h, const sl_sandbox_info *info, void *arg, sl_error *err) {
  snapshot_args *a = arg;
  const sl_backend_ops *ops = sl_backend_ops_for(info->backend, err);
  if (ops == NULL || check_live(info, err) < 0) return -err->code;
  if (ops->snapshot == NULL) return unsupported(info->backend, "snapshot", err);
  return ops->snapshot(h, info, a->opts, a->out, a->timing, err);
}

int sl_sandbox_snapshot(sl_sandboxes *h, const char *id, const sl_snapshot_opts *opts,
                        sl_snapshot *out, sl_snapshot_timing *timing, sl_error *err) {
  sl_snapshot_opts defaults = {0};
  if (opts == NULL) opts = &defaults;
  if (out != NULL) memset(out, 0, sizeof *out);
  if (opts->wait_ms < 0)
    return sl_error_set(err, EINVAL, "invalid wait: %d ms (expected >= 0)", opts->wait_ms);
  if (sl_labels_check(opts->labels, err) < 0) return sl_error_wrap_subject(err, "snapshot", id);
  snapshot_args args = {opts, out, timing};
  return sl_sandbox_locked(h, id, "snapshot", opts->wait_ms, do_snapshot, &args, err);
}

/* Pause and resume */

static int do_pause(sl_sandboxes *h, const sl_sandbox_info *info, void *arg, sl_error *err) {
  const sl_pause_opts *opts = arg;
  if (info->state == SL_SANDBOX_PAUSED) return 0;
  const sl_backend_ops *ops = sl_backend_ops_for(info->backend, err);
  if (ops == NULL || check_live(info, err) < 0) return -err->code;
  if (ops->pause == NULL) return unsupported(info->backend, "pause", err);
  return ops->pause(h, info, opts->files_only, err);
}

int sl_sandbox_pause(sl_sandboxes *h, const char *id, const sl_pause_opts *opts,
                     sl_error *err) {
  sl_pause_opts defaults = {0};
  if (opts == NULL) opts = &defaults;
  if (opts->wait_ms < 0)
    return sl_error_set(err, EINVAL, "invalid wait: %d ms (expected >= 0)", opts->wait_ms);
  return sl_sandbox_locked(h, id, "pause", opts->wait_ms, do_pause, (void *)opts, err);
}

static int do_resume(sl_sandboxes *h, const sl_sandbox_info *info, void *arg, sl_error *err) {
  (void)arg;
  if (info->state == SL_SANDBOX_RUNNING || info->state == SL_SANDBOX_FROZEN) return 0;
  if (info->state == SL_SANDBOX_CREATING)
    return sl_error_set(err, EBUSY, "sandbox is still being created: %s", info->id);
  const sl_backend_ops *ops = sl_backend_ops_for(info->backend, err);
  if (ops == NULL) return -err->code;
  if (ops->resume == NULL) return unsupported(info->backend, "resume", err);
  return ops->resume(h, info, err);
}

int sl_sandbox_resume(sl_sandboxes *h, const char *id, sl_sandbox_info *out, sl_error *err) {
  int rc = sl_sandbox_locked(h, id, "resume", OP_LOCK_WAIT_MS, do_resume, NULL, err);
  if (rc == 0 && out != NULL) rc = sl_sandbox_get(h, id, out, err);
  return rc;
}

int sl_sandbox_connect(sl_sandboxes *h, const char *id, sl_sandbox_info *out, sl_error *err) {
  sl_sandbox_info info;
  /* "sandbox not found" and "sandbox has ended" name the sandbox. */
  if (sl_sandbox_get(h, id, &info, err) < 0) return -err->code;
  if (info.state == SL_SANDBOX_DEAD)
    return sl_error_set(err, ESRCH, "sandbox has ended (%s): %s", info.end_reason, id);
  if (info.state == SL_SANDBOX_PAUSED) return sl_sandbox_resume(h, id, out, err);
  if (out != NULL) *out = info;
  return 0;
}

/* Rollback */

/* Whether `target` was taken of sandbox `id` or of an ancestor: a
 * sandbox that one of the source snapshots in its chain was taken of. */
static int in_lineage(sl_catalog *cat, const char *id, const sl_snapshot *target, sl_error *err) {
  if (strcmp(target->source_sandbox_id, id) == 0) return 1;
  sl_sandbox row = {0};
  if (sl_catalog_sandbox_get(cat, id, &row, err) < 0) return -err->code;
  char next[SL_ID_SIZE];
  snprintf(next, sizeof next, "%s", row.source_snapshot_id);
  sl_sandbox_clear(&row);
  for (int depth = 0; next[0] != '\0' && depth < LINEAGE_MAX_DEPTH; depth++) {
    sl_snapshot sn = {0};
    sl_error ignored = {0};
    if (sl_catalog_snapshot_get(cat, next, &sn, &ignored) < 0) break; /* deleted: chain ends */
    int found = strcmp(sn.source_sandbox_id, target->source_sandbox_id) == 0;
    snprintf(next, sizeof next, "%s", sn.parent_id);
    sl_snapshot_clear(&sn);
    if (found) return 1;
  }
  return 0;
}

static int do_rollback(sl_sandboxes *h, const sl_sandbox_info *info, void *arg, sl_error *err) {
  const sl_snapshot *sn = arg;
  const sl_backend_ops *ops = sl_backend_ops_for(info->backend, err);
  if (ops == NULL || check_live(info, err) < 0) return -err->code;
  if (ops->rollback == NULL) return unsupported(info->backend, "rollback", err);
  if (sn->backend != info->backend)
    return sl_error_set(err, EINVAL, "snapshot %s is a %s snapshot, the sandbox is %s", sn->id,
                        sl_backend_name(sn->backend), sl_backend_name(info->backend));
  int rc = in_lineage(catalog_of(h), info->id, sn, err);
  if (rc < 0) return rc;
  if (rc == 0)
    return sl_error_set(err, EINVAL,
                        "snapshot %s was taken of %s, which is neither this sandbox nor one of "
                        "its ancestors (fork a new sandbox from it instead)",
                        sn->id, sn->source_sandbox_id);
  return ops->rollback(h, info, sn, err);
}

int sl_sandbox_rollback(sl_sandboxes *h, const char *id, const char *snapshot, sl_error *err) {
  sl_snapshot sn = {0};
  if (snapshot == NULL) return sl_error_set(err, EINVAL, "missing snapshot for rollback: %s", id);
  if (sl_catalog_snapshot_resolve(catalog_of(h), snapshot, &sn, err) < 0)
    return sl_error_wrap_subject(err, "rollback", id);
  int rc = sl_sandbox_locked(h, id, "rollback", OP_LOCK_WAIT_MS, do_rollback, &sn, err);
  sl_snapshot_clear(&sn);
  return rc;
}

/* Forks in parallel */

typedef struct create_job {
  sl_sandboxes *h;
  const sl_create_spec *spec;
  sl_sandbox_info *out;
  sl_error err;
  int rc;
} create_job;

static void *create_one(void *arg) {
  create_job *job = arg;
  job->rc = sl_sandbox_create(job->h, job->spec, job->out, &job->err);
  return NULL;
}

/* Kill and remove the sandboxes that were created; keep the first error. */
static void undo_created(sl_sandboxes *h, create_job *jobs, size_t count) {
  for (size_t i = 0; i < count; i++) {
    if (jobs[i].rc < 0) continue;
    sl_error ignored = {0};
    if (sl_sandbox_kill(h, jobs[i].out->id, &ignored) < 0 ||
        sl_sandbox_remove(h, jobs[i].out->id, &ignored) < 0)
      SL_WARN("sandbox.create_many_undo_failed", "sandbox=%s error=\"%s\"", jobs[i].out->id,
              ignored.msg);
  }
}

int sl_sandbox_create_many(sl_sandboxes *h, const sl_create_spec *spec, size_t count,
                           sl_sandbox_info *out, sl_error *err) {
  if (count < 1 || count > CREATE_MANY_MAX)
    return sl_error_set(err, EINVAL, "invalid count: %zu (expected 1 to %d)", count,
                        CREATE_MANY_MAX);
  create_job jobs[CREATE_MANY_MAX];
  pthread_t threads[CREATE_MANY_MAX];
  bool started[CREATE_MANY_MAX] = {false};
  for (size_t i = 0; i < count; i++) {
    jobs[i] = (create_job){.h = h, .spec = spec, .out = &out[i]};
    started[i] = pthread_create(&threads[i], NULL, create_one, &jobs[i]) == 0;
    if (!started[i]) create_one(&jobs[i]); /* no thread left: create it here */
  }
  for (size_t i = 0; i < count; i++)
    if (started[i]) pthread_join(threads[i], NULL);
  for (size_t i = 0; i < count; i++) {
    if (jobs[i].rc == 0) continue;
    undo_created(h, jobs, count);
    if (err == NULL) return jobs[i].rc;
    *err = jobs[i].err;
    return sl_error_wrap(err, "create %zu of %zu", i + 1, count);
  }
  return 0;
}

/* Snapshot rows */

int sl_snapshots_get(sl_sandboxes *h, const char *ref, sl_snapshot *out, sl_error *err) {
  return sl_catalog_snapshot_resolve(catalog_of(h), ref, out, err);
}

int sl_snapshots_list(sl_sandboxes *h, const sl_snapshot_query *query, sl_snapshot_page *page,
                      sl_error *err) {
  return sl_catalog_snapshot_list(catalog_of(h), query, page, err);
}

int sl_snapshots_delete(sl_sandboxes *h, const char *ref, sl_error *err) {
  sl_snapshot sn = {0};
  /* "snapshot not found" names the reference and needs no more context. */
  if (sl_catalog_snapshot_resolve(catalog_of(h), ref, &sn, err) < 0) return -err->code;
  const sl_backend_ops *ops = sl_backend_ops_for(sn.backend, err);
  int rc = ops == NULL ? -err->code : 0;
  if (rc == 0 && ops->snapshot_delete == NULL)
    rc = unsupported(sn.backend, "deleting a snapshot", err);
  if (rc == 0) rc = ops->snapshot_delete(h, &sn, err);
  if (rc < 0) sl_error_wrap_subject(err, "delete snapshot", sn.id);
  sl_snapshot_clear(&sn);
  return rc;
}
