/* The operations each sandbox backend implements; sandbox.c dispatches
 * on a sandbox's backend. Internal to the core. */
#ifndef SANDLOT_BACKEND_H
#define SANDLOT_BACKEND_H

#include "sandbox.h"
#include "sandbox_store.h"
#include "template.h"

struct sl_sandboxes {
  char home[SL_SANDBOX_PATH_MAX];
  sl_sbstore *store;
  sl_line_fn progress;
  void *progress_data;
};

typedef struct sl_backend_ops {
  /* `spec` has passed sl_sandbox_spec_check(). */
  int (*create)(sl_sandboxes *h, const sl_create_spec *spec, sl_sandbox_info *out, sl_error *err);
  /* `info` is not dead; the caller holds the sandbox's op.lock. */
  int (*kill)(sl_sandboxes *h, const sl_sandbox_info *info, sl_error *err);
  int (*freeze)(sl_sandboxes *h, const sl_sandbox_info *info, sl_error *err);
  int (*thaw)(sl_sandboxes *h, const sl_sandbox_info *info, sl_error *err);
  int (*set_timeout)(sl_sandboxes *h, const sl_sandbox_info *info, int64_t seconds,
                     sl_error *err);
  /* The next four: `info` is running or frozen (paused for resume); the
   * caller holds the sandbox's op.lock. */
  int (*snapshot)(sl_sandboxes *h, const sl_sandbox_info *info, const sl_snapshot_opts *opts,
                  sl_snapshot *out, sl_snapshot_timing *timing, sl_error *err);
  int (*pause)(sl_sandboxes *h, const sl_sandbox_info *info, bool files_only, sl_error *err);
  int (*resume)(sl_sandboxes *h, const sl_sandbox_info *info, sl_error *err);
  /* `snapshot` is ready, of this backend and in the sandbox's lineage. */
  int (*rollback)(sl_sandboxes *h, const sl_sandbox_info *info, const sl_snapshot *snapshot,
                  sl_error *err);
  /* Delete a snapshot of this backend and its files. */
  int (*snapshot_delete)(sl_sandboxes *h, const sl_snapshot *snapshot, sl_error *err);
  /* Clean up after a crash: called for every record, dead ones included
   * (their mounts or cgroups may be left over). Sets *cleaned to 1 when
   * it found leftovers and removed them. */
  int (*gc)(sl_sandboxes *h, const sl_sandbox_info *info, int *cleaned, sl_error *err);
} sl_backend_ops;

extern const sl_backend_ops sl_proc_backend;
extern const sl_backend_ops sl_vm_backend;

/* Make the spec's template (default "base") a layer of the store and
 * record it in the catalog. Shared by the backends. */
int sl_backend_prepare_template(sl_sandboxes *h, const sl_create_spec *spec,
                                sl_template_layer *out, sl_error *err);

/* The operations of `backend`; NULL with ENOTSUP when it is not built. */
const sl_backend_ops *sl_backend_ops_for(sl_backend backend, sl_error *err);

typedef int (*sl_op_fn)(sl_sandboxes *h, const sl_sandbox_info *info, void *arg, sl_error *err);

/* Take the sandbox's op.lock (waiting up to `wait_ms`; EBUSY after),
 * read its record again and run `fn` unless it has ended (ESRCH).
 * "sandbox not found" and "sandbox has ended" name the sandbox and are
 * returned as they are; other failures get `what` and the id, once
 * (sl_error_wrap_subject). */
int sl_sandbox_locked(sl_sandboxes *h, const char *id, const char *what, int wait_ms,
                      sl_op_fn fn, void *arg, sl_error *err);

/* "key=value" labels as the catalog's JSON object; NULL when out of
 * memory. Free with free(). */
char *sl_labels_json(const char *const *labels);

/* Check "key=value" labels against the catalog's rules (EINVAL). */
int sl_labels_check(const char *const *labels, sl_error *err);

/* Unmount what is mounted below sandboxes/<id>/ for ids without a row,
 * counting the mounts in *count. Part of gc. */
int sl_proc_gc_orphans(sl_sandboxes *h, int *count, sl_error *err);

/* Write <home>/sandboxes/<id> to `buf`. */
void sl_sandbox_dir(const sl_sandboxes *h, const char *id, char *buf, size_t len);

#endif
