/* The snapshot engine: taking, deleting and collecting snapshots. */
#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent_client.h"
#include "criu_tree.h"
#include "layer_copy.h"
#include "log.h"
#include "oplock.h"
#include "proc_util.h"

/* The host's handle on the agent socket in the sandbox's folder (a bind
 * mount made by the monitor). */
#define AGENT_SOCKET_HOST "agent.sock"
#define SOURCE_FILE "source"
#define AGENT_LAYER_FILE "agent_layer"
#define DEFAULT_CRIU_TIMEOUT_MS 120000
#define QUIESCE_TIMEOUT_MS 5000

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- op.lock ------------------------------------------------------------ */

/* True when no process has the op.lock of `sandbox_dir` locked. */
static bool op_lock_free(const char *sandbox_dir) {
  int fd = sl_op_lock(sandbox_dir, 0, NULL);
  sl_op_unlock(fd);
  return fd >= 0;
}

/* ---- cgroups JSON ------------------------------------------------------- */

/* Copy the JSON string starting after its opening quote at *p into buf,
 * decoding \" \\ and \/ (cgroup paths need no other escape). */
static int json_string(const char **p, char *buf, size_t size) {
  size_t n = 0;
  for (const char *s = *p; *s; s++) {
    char c = *s;
    if (c == '"') {
      buf[n] = '\0';
      *p = s + 1;
      return 0;
    }
    if (c == '\\') {
      s++;
      if (*s != '"' && *s != '\\' && *s != '/') return -1;
      c = *s;
    }
    if (n + 1 >= size) return -1;
    buf[n++] = c;
  }
  return -1;
}

int sl_cgroup_path_from_json(const char *json, const char *controller, char *buf, size_t size,
                             sl_error *err) {
  const char *p = json ? strchr(json, '{') : NULL;
  if (p == NULL) return sl_error_set(err, EINVAL, "invalid cgroups JSON: no object");
  p++;
  for (;;) {
    while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\t') p++;
    if (*p == '}') break;
    char key[64], value[PATH_MAX];
    if (*p++ != '"' || json_string(&p, key, sizeof key) < 0)
      return sl_error_set(err, EINVAL, "invalid cgroups JSON: bad key");
    while (*p == ' ') p++;
    if (*p++ != ':') return sl_error_set(err, EINVAL, "invalid cgroups JSON: missing ':'");
    while (*p == ' ') p++;
    if (*p++ != '"' || json_string(&p, value, sizeof value) < 0)
      return sl_error_set(err, EINVAL, "invalid cgroups JSON: bad value for %s", key);
    if (strcmp(key, controller) == 0) {
      if (snprintf(buf, size, "%s", value) >= (int)size)
        return sl_error_set(err, ENAMETOOLONG, "cgroup path too long: %s", value);
      return 0;
    }
  }
  return sl_error_set(err, ENOENT, "no %s cgroup recorded", controller);
}

/* The cgroup that freezes the sandbox: the v1 freezer controller's, or on
 * cgroup v2 the unified one (the process backend's keys). */
static int freezer_cgroup_of(const char *json, char *buf, size_t size, sl_error *err) {
  int rc = sl_cgroup_path_from_json(json, "freezer", buf, size, err);
  if (rc == -ENOENT) rc = sl_cgroup_path_from_json(json, "unified", buf, size, err);
  if (rc == -ENOENT) rc = sl_error_set(err, ENOENT, "no freezer or unified cgroup recorded");
  return rc;
}

/* ---- take --------------------------------------------------------------- */

/* Everything one take needs, filled step by step. */
typedef struct take_ctx {
  sl_catalog *cat;
  const sl_store *store;
  const sl_snapshot_request *req;
  sl_sandbox sandbox;
  char snapshot_id[SL_ID_SIZE], layer_id[SL_ID_SIZE];
  char sandbox_dir[PATH_MAX], upper[PATH_MAX], freezer[PATH_MAX];
  char snapshot_dir[PATH_MAX], images[PATH_MAX], layer[PATH_MAX], work[PATH_MAX];
  bool begun;
  double dump_ms, frozen_ms;
} take_ctx;

static int check_sandbox_state(const sl_sandbox *sb, sl_error *err) {
  switch (sb->state) {
    case SL_SANDBOX_RUNNING:
    case SL_SANDBOX_FROZEN: break;
    case SL_SANDBOX_CREATING:
      return sl_error_set(err, EBUSY, "sandbox is still being created: %s", sb->id);
    case SL_SANDBOX_PAUSED:
      return sl_error_set(err, EBUSY, "sandbox is paused (resume it first): %s", sb->id);
    case SL_SANDBOX_DEAD: return sl_error_set(err, ESRCH, "sandbox is dead: %s", sb->id);
  }
  uint64_t start = sb->init_pid > 0 ? sl_pid_start_time((pid_t)sb->init_pid) : 0;
  if (start == 0 || (sb->init_start_time > 0 && start != (uint64_t)sb->init_start_time))
    return sl_error_set(err, ESRCH, "sandbox has no running process: %s (pid %lld)", sb->id,
                        (long long)sb->init_pid);
  return 0;
}

/* Read the sandbox row (again, once the lock is held) and derive paths. */
static int load_sandbox(take_ctx *t, sl_error *err) {
  sl_sandbox_clear(&t->sandbox);
  int rc = sl_catalog_sandbox_get(t->cat, t->req->sandbox_id, &t->sandbox, err);
  if (rc == 0) rc = check_sandbox_state(&t->sandbox, err);
  if (rc == 0) rc = freezer_cgroup_of(t->sandbox.cgroups, t->freezer, sizeof t->freezer, err);
  if (rc == 0)
    rc = sl_store_sandbox_path(t->store, t->sandbox.id, "upper", t->upper, sizeof t->upper, err);
  return rc;
}

/* Write `text` and a newline to the new file snapshots/<sn>/<name>. */
static int write_entry_file(const take_ctx *t, const char *name, const char *text,
                            sl_error *err) {
  char path[PATH_MAX];
  int rc = sl_store_snapshot_path(t->store, t->snapshot_id, name, path, sizeof path, err);
  if (rc < 0) return rc;
  FILE *f = fopen(path, "wxe");
  if (f == NULL) return sl_error_errno(err, errno, "cannot create %s", path);
  bool failed = fprintf(f, "%s\n", text) < 0;
  if (fclose(f) != 0 || failed)
    return sl_error_errno(err, errno ? errno : EIO, "cannot write %s", path);
  return 0;
}

/* Create snapshots/<sn>/ with the source sandbox id in it, so gc can find
 * the sandbox of a pending snapshot, and the agent layer its tree runs
 * from, then record the pending row. */
static int begin_snapshot(take_ctx *t, sl_error *err) {
  int rc = sl_id_new(SL_ID_SNAPSHOT, t->snapshot_id, err);
  if (rc == 0) rc = sl_id_new(SL_ID_LAYER, t->layer_id, err);
  if (rc == 0)
    rc = sl_store_create_entry(t->store, SL_AREA_SNAPSHOTS, t->snapshot_id, t->snapshot_dir,
                               sizeof t->snapshot_dir, err);
  if (rc == 0)
    rc = sl_store_snapshot_path(t->store, t->snapshot_id, "images", t->images, sizeof t->images,
                                err);
  if (rc == 0) rc = write_entry_file(t, SOURCE_FILE, t->sandbox.id, err);
  if (rc == 0 && t->req->agent_layer != NULL)
    rc = write_entry_file(t, AGENT_LAYER_FILE, t->req->agent_layer, err);
  if (rc < 0) return rc;
  rc = sl_store_layer_path(t->store, t->layer_id, NULL, t->layer, sizeof t->layer, err);
  if (rc == 0)
    rc = sl_store_sandbox_path(t->store, t->sandbox.id, "log", t->work, sizeof t->work, err);
  if (rc < 0) return rc;
  mkdir(t->work, 0700);
  snprintf(t->work + strlen(t->work), sizeof t->work - strlen(t->work), "/%s", t->snapshot_id);

  sl_snapshot_spec spec = {
      .id = t->snapshot_id,
      .source_sandbox_id = t->sandbox.id,
      .name = t->req->name,
      .tag = t->req->tag,
      .labels = t->req->labels,
      .kind = t->req->memory ? SL_SNAPSHOT_FULL : SL_SNAPSHOT_FS,
      .layer_id = t->layer_id,
      .layer_path = t->layer,
      .image_dir = t->images,
      .expires_at = t->req->expires_at,
  };
  rc = sl_catalog_snapshot_begin(t->cat, &spec, err);
  if (rc == 0) t->begun = true;
  return rc;
}

/* Freeze a sandbox that was frozen before the take again, whatever
 * became of the dump. A failure is logged and, after a successful dump,
 * fails the take. */
static void refreeze(take_ctx *t, int *rc, sl_error *err) {
  sl_error local = {0};
  if (sl_freezer_freeze(t->freezer, 10000, &local) == 0) return;
  SL_ERROR("snapshot.refreeze_failed", "sandbox=%s error=\"%s\"", t->sandbox.id, local.msg);
  if (*rc == 0) {
    if (err != NULL) *err = local;
    *rc = -local.code;
  }
}

/* Quiesce the agent, dump, and end the quiesce. A frozen sandbox is
 * thawed first, because its agent must reply to the quiesce. Its processes
 * run until CRIU's pre-dump action freezes the tree again, and it stays
 * frozen afterwards. */
static int dump_full(take_ctx *t, sl_error *err) {
  char socket[PATH_MAX];
  int timeout_ms = t->req->timeout_ms > 0 ? t->req->timeout_ms : DEFAULT_CRIU_TIMEOUT_MS;
  bool was_frozen = t->sandbox.state == SL_SANDBOX_FROZEN;
  int rc = sl_store_sandbox_path(t->store, t->sandbox.id, AGENT_SOCKET_HOST, socket,
                                 sizeof socket, err);
  if (rc < 0) return rc;
  if (was_frozen) rc = sl_freezer_thaw(t->freezer, err);
  /* A hold left by a host that died during a dump would keep the quiesce
   * below waiting; with op.lock held, no other dump runs now. */
  sl_error ignored = {0};
  sl_agent_end_quiesce((pid_t)t->sandbox.init_pid, (uint64_t)t->sandbox.init_start_time, &ignored);
  if (rc == 0) rc = sl_agent_quiesce_hold(socket, QUIESCE_TIMEOUT_MS, SL_AGENT_DUMP_HOLD_MS, err);
  sl_criu_dump_result res = {0};
  if (rc == 0) {
    sl_criu_dump_request dump = {
        .init_pid = (pid_t)t->sandbox.init_pid,
        .freezer_cgroup = t->freezer,
        .images_dir = t->images,
        .work_dir = t->work,
        .upper_dir = t->upper,
        .layer_dir = t->layer,
        .leave_running = true,
        .keep_frozen = was_frozen,
        .timeout_ms = timeout_ms,
    };
    rc = sl_criu_dump_tree(&dump, &res, err);
  }
  if (sl_agent_end_quiesce((pid_t)t->sandbox.init_pid, (uint64_t)t->sandbox.init_start_time,
                           &ignored) < 0)
    SL_WARN("snapshot.end_quiesce_failed", "sandbox=%s error=\"%s\"", t->sandbox.id, ignored.msg);
  if (was_frozen) refreeze(t, &rc, err);
  t->dump_ms = res.elapsed_ms;
  t->frozen_ms = res.stats.frozen_time_us / 1000.0;
  return rc;
}

/* Freeze, copy the upper layer, thaw (unless the sandbox was frozen
 * already), then flush the copy. */
static int dump_fs(take_ctx *t, sl_error *err) {
  double start = now_ms();
  bool was_frozen = t->sandbox.state == SL_SANDBOX_FROZEN;
  int rc = sl_freezer_freeze(t->freezer, 10000, err);
  if (rc < 0) return rc;
  rc = sl_layer_copy(t->upper, t->layer, NULL, err);
  sl_error thaw_err = {0};
  if (!was_frozen && sl_freezer_thaw(t->freezer, &thaw_err) < 0 && rc == 0) {
    if (err != NULL) *err = thaw_err;
    rc = -thaw_err.code;
  }
  if (rc == 0) rc = sl_layer_sync(t->layer, err);
  t->dump_ms = now_ms() - start;
  return rc;
}

static void remove_folder(const char *path) {
  sl_error err = {0};
  if (path[0] != '\0' && sl_layer_remove(path, &err) < 0)
    SL_ERROR("snapshot.cleanup_failed", "path=%s error=\"%s\"", path, err.msg);
}

static void remove_layer_folders(const sl_layer_list *removed) {
  for (size_t i = 0; i < removed->count; i++)
    if (removed->items[i].path != NULL) remove_folder(removed->items[i].path);
}

/* Undo a failed take: the pending row (and the layer rows it left
 * unused), the images and the layer folder. */
static void abort_take(take_ctx *t) {
  if (t->begun) {
    sl_layer_list removed = {0};
    sl_error err = {0};
    if (sl_catalog_snapshot_delete(t->cat, t->snapshot_id, &removed, &err) < 0)
      SL_ERROR("snapshot.abort_failed", "snapshot=%s error=\"%s\"", t->snapshot_id, err.msg);
    remove_layer_folders(&removed);
    sl_layer_list_free(&removed);
  }
  if (t->layer[0] != '\0') remove_folder(t->layer);
  if (t->snapshot_dir[0] != '\0') remove_folder(t->snapshot_dir);
}

static int commit_take(take_ctx *t, sl_snapshot *out, sl_error *err) {
  uint64_t images = 0, layer = 0;
  int rc = sl_layer_size(t->snapshot_dir, &images, err);
  if (rc == 0) rc = sl_layer_size(t->layer, &layer, err);
  if (rc == 0)
    rc = sl_catalog_snapshot_commit(t->cat, t->snapshot_id, (int64_t)(images + layer),
                                    (int64_t)layer, out, err);
  return rc;
}

static int validate_request(const sl_snapshot_request *req, sl_error *err) {
  if (req == NULL) return sl_error_set(err, EINVAL, "missing snapshot request");
  int rc = sl_id_validate(SL_ID_SANDBOX, req->sandbox_id, err);
  if (rc == 0 && req->lock_timeout_ms < 0)
    rc = sl_error_set(err, EINVAL, "invalid lock timeout %d ms", req->lock_timeout_ms);
  return rc;
}

int sl_snapshot_take(sl_catalog *cat, const sl_store *store, const sl_snapshot_request *req,
                     sl_snapshot *out, sl_snapshot_timing *timing, sl_error *err) {
  double start = now_ms();
  take_ctx t = {.cat = cat, .store = store, .req = req};
  int rc = validate_request(req, err);
  if (rc == 0) rc = load_sandbox(&t, err);
  if (rc == 0)
    rc = sl_store_sandbox_path(store, t.sandbox.id, NULL, t.sandbox_dir, sizeof t.sandbox_dir,
                               err);
  int lock = -1;
  if (rc == 0 && !req->lock_held) {
    lock = sl_op_lock(t.sandbox_dir, req->lock_timeout_ms, err);
    if (lock < 0) rc = lock;
  }
  if (rc == 0) rc = load_sandbox(&t, err);
  if (rc == 0) rc = begin_snapshot(&t, err);
  if (rc == 0) rc = req->memory ? dump_full(&t, err) : dump_fs(&t, err);
  if (rc == 0) rc = commit_take(&t, out, err);
  if (rc < 0) abort_take(&t);
  sl_op_unlock(lock);
  if (timing != NULL)
    *timing = (sl_snapshot_timing){now_ms() - start, t.dump_ms, t.frozen_ms};
  if (rc == 0)
    SL_INFO("snapshot.taken", "sandbox=%s snapshot=%s kind=%s ms=%.1f frozen_ms=%.1f",
            t.sandbox.id, t.snapshot_id, req->memory ? "full" : "fs", now_ms() - start,
            t.frozen_ms);
  sl_sandbox_clear(&t.sandbox);
  /* The caller names the operation and the sandbox (sl_sandbox_snapshot
   * adds "snapshot ID"), so the message gets nothing here. */
  return rc;
}

int sl_snapshot_agent_layer(const sl_store *store, const char *snapshot_id, char *buf,
                            size_t size, sl_error *err) {
  char path[PATH_MAX];
  int rc = sl_store_snapshot_path(store, snapshot_id, AGENT_LAYER_FILE, path, sizeof path, err);
  if (rc < 0) return rc;
  FILE *f = fopen(path, "re");
  if (f == NULL) return sl_error_errno(err, errno, "no agent layer recorded for %s", snapshot_id);
  bool ok = fgets(buf, (int)size, f) != NULL;
  fclose(f);
  char *nl = ok ? strchr(buf, '\n') : NULL;
  if (nl == NULL) return sl_error_set(err, EIO, "invalid agent layer record of %s", snapshot_id);
  *nl = '\0';
  return 0;
}

/* ---- remove and gc ------------------------------------------------------ */

/* Delete the catalog row of snapshot `id`, then its folders. */
static int delete_snapshot(sl_catalog *cat, const sl_store *store, const char *id,
                           sl_error *err) {
  sl_layer_list removed = {0};
  int rc = sl_catalog_snapshot_delete(cat, id, &removed, err);
  if (rc < 0) return rc;
  remove_layer_folders(&removed);
  sl_layer_list_free(&removed);
  char dir[PATH_MAX];
  sl_error ignored = {0};
  if (sl_store_snapshot_path(store, id, NULL, dir, sizeof dir, &ignored) == 0) remove_folder(dir);
  return 0;
}

int sl_snapshot_remove(sl_catalog *cat, const sl_store *store, const char *ref, sl_error *err) {
  sl_snapshot sn = {0};
  int rc = sl_catalog_snapshot_resolve(cat, ref, &sn, err);
  if (rc == 0) rc = delete_snapshot(cat, store, sn.id, err);
  if (rc == 0) SL_INFO("snapshot.deleted", "snapshot=%s", sn.id);
  sl_snapshot_clear(&sn);
  return rc;
}

/* The sandbox id recorded in snapshots/<id>/source, or "" when missing. */
static void read_source(const sl_store *store, const char *snapshot_id, char *out) {
  char path[PATH_MAX];
  out[0] = '\0';
  sl_error ignored = {0};
  if (sl_store_snapshot_path(store, snapshot_id, SOURCE_FILE, path, sizeof path, &ignored) < 0)
    return;
  FILE *f = fopen(path, "re");
  if (f == NULL) return;
  if (fscanf(f, "%15s", out) != 1) out[0] = '\0';
  fclose(f);
}

static int gc_pending(sl_catalog *cat, const sl_store *store, int64_t older_than_ms,
                      int *cleaned, sl_error *err) {
  sl_id_list pending = {0};
  int rc = sl_catalog_snapshot_pending(cat, sl_catalog_now_ms() - older_than_ms, 1000,
                                       &pending, err);
  for (size_t i = 0; rc == 0 && i < pending.count; i++) {
    char source[SL_ID_SIZE], dir[PATH_MAX];
    read_source(store, pending.ids[i], source);
    sl_error ignored = {0};
    if (source[0] != '\0' &&
        sl_store_sandbox_path(store, source, NULL, dir, sizeof dir, &ignored) == 0 &&
        !op_lock_free(dir))
      continue; /* its snapshot is still being taken */
    rc = delete_snapshot(cat, store, pending.ids[i], err);
    if (rc == 0) {
      (*cleaned)++;
      SL_WARN("snapshot.gc_pending", "snapshot=%s sandbox=%s", pending.ids[i], source);
    }
  }
  sl_id_list_free(&pending);
  return rc;
}

static bool in_list(const sl_id_list *list, const char *id) {
  for (size_t i = 0; i < list->count; i++)
    if (strcmp(list->ids[i], id) == 0) return true;
  return false;
}

/* Whether the folder snapshots/<id>/ is left over from a crash: no row
 * (ready or pending) names it, and no take can still be writing it. A
 * take creates the folder and its source file before it inserts the
 * pending row, and it holds the sandbox's op.lock all along. A folder
 * whose source is unreadable counts only once it is older than the
 * limit. */
static bool orphan_folder(sl_catalog *cat, const sl_store *store, const char *id,
                          const sl_id_list *pending, int64_t older_than_ms) {
  sl_snapshot sn = {0};
  sl_error err = {0};
  int rc = sl_catalog_snapshot_get(cat, id, &sn, &err);
  sl_snapshot_clear(&sn);
  if (rc == 0 || err.code != ENOENT || in_list(pending, id)) return false;
  char source[SL_ID_SIZE], dir[PATH_MAX];
  read_source(store, id, source);
  if (source[0] != '\0')
    return sl_store_sandbox_path(store, source, NULL, dir, sizeof dir, &err) < 0 ||
           op_lock_free(dir);
  struct stat st;
  if (sl_store_snapshot_path(store, id, NULL, dir, sizeof dir, &err) < 0 || lstat(dir, &st) < 0)
    return false;
  return (int64_t)st.st_mtime * 1000 <= sl_catalog_now_ms() - older_than_ms;
}

static int gc_orphan_folders(sl_catalog *cat, const sl_store *store, int64_t older_than_ms,
                             int *cleaned, sl_error *err) {
  char area[sizeof store->root + 16];
  snprintf(area, sizeof area, "%s/snapshots", store->root);
  sl_id_list pending = {0};
  int rc = sl_catalog_snapshot_pending(cat, sl_catalog_now_ms() + 86400000, SL_LIST_MAX_LIMIT,
                                       &pending, err);
  DIR *d = rc == 0 ? opendir(area) : NULL;
  if (rc == 0 && d == NULL && errno != ENOENT)
    rc = sl_error_errno(err, errno, "cannot list %s", area);
  struct dirent *e;
  while (d != NULL && (e = readdir(d)) != NULL) {
    if (sl_id_validate(SL_ID_SNAPSHOT, e->d_name, NULL) < 0) continue;
    if (!orphan_folder(cat, store, e->d_name, &pending, older_than_ms)) continue;
    char dir[PATH_MAX];
    if (sl_store_snapshot_path(store, e->d_name, NULL, dir, sizeof dir, NULL) < 0) continue;
    remove_folder(dir);
    (*cleaned)++;
    SL_WARN("snapshot.gc_orphan", "snapshot=%s path=%s", e->d_name, dir);
  }
  if (d != NULL) closedir(d);
  sl_id_list_free(&pending);
  return rc;
}

int sl_snapshot_gc(sl_catalog *cat, const sl_store *store, int64_t older_than_ms, int *cleaned,
                   sl_error *err) {
  int count = 0;
  int rc = gc_pending(cat, store, older_than_ms, &count, err);
  if (rc == 0) rc = gc_orphan_folders(cat, store, older_than_ms, &count, err);
  if (cleaned != NULL) *cleaned = count;
  return rc < 0 ? sl_error_wrap(err, "snapshot gc") : 0;
}
