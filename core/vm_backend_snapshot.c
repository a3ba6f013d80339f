/* Snapshots of VM sandboxes as catalog snapshots.
 *
 * A VM snapshot maps to the store like a process snapshot:
 *   layers/<ly>/disk.qcow2   the frozen disk overlay: the snapshot's layer,
 *                            stacked (qcow2 backing file) on the layer of
 *                            the sandbox's base, in the catalog and on disk
 *   snapshots/<sn>/source    the sandbox id, for gc
 *   snapshots/<sn>/vm/       the image_dir: vm.json, state and ram (kind
 *                            "full"; a files-only snapshot, kind "fs", has
 *                            none of them)
 * The sandbox continues on an overlay stacked on the new layer. So its
 * base layer moves to that layer before the disk switch, while the row is
 * still pending, and neither gc nor a failed take removes a layer that the
 * sandbox reads through. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "layer_copy.h"
#include "log.h"
#include "proc_util.h"
#include "vm.h"
#include "vm_backend.h"
#include "vm_util.h"

/* What one take makes, filled step by step. */
typedef struct vm_take {
  sl_sandboxes *h;
  const sl_sandbox_info *info;
  const vm_snapshot_request *req;
  char snapshot_id[SL_ID_SIZE], layer_id[SL_ID_SIZE];
  char snapshot_dir[PATH_MAX], image_dir[PATH_MAX], layer_dir[PATH_MAX], disk[PATH_MAX];
  bool begun, pinned;
} vm_take;

static sl_catalog *catalog(const vm_take *t) { return sl_sbstore_catalog(t->h->store); }
static const sl_store *store(const vm_take *t) { return sl_sbstore_store(t->h->store); }

static int write_source(const vm_take *t, sl_error *err) {
  char path[PATH_MAX];
  int rc = sl_store_snapshot_path(store(t), t->snapshot_id, VM_SNAPSHOT_SOURCE_FILE, path,
                                  sizeof path, err);
  if (rc < 0) return rc;
  char line[SL_ID_SIZE + 1];
  snprintf(line, sizeof line, "%s\n", t->info->id);
  return sl_write_file_atomic(path, line, strlen(line), 0600, err);
}

/* Make snapshots/<sn>/ (with source and vm/) and layers/<ly>/. */
static int make_folders(vm_take *t, sl_error *err) {
  int rc = sl_id_new(SL_ID_SNAPSHOT, t->snapshot_id, err);
  if (rc == 0) rc = sl_id_new(SL_ID_LAYER, t->layer_id, err);
  if (rc == 0)
    rc = sl_store_create_entry(store(t), SL_AREA_SNAPSHOTS, t->snapshot_id, t->snapshot_dir,
                               sizeof t->snapshot_dir, err);
  if (rc == 0) rc = write_source(t, err);
  if (rc == 0)
    rc = sl_store_snapshot_path(store(t), t->snapshot_id, VM_SNAPSHOT_IMAGE_DIR, t->image_dir,
                                sizeof t->image_dir, err);
  if (rc == 0 && !t->req->files_only && mkdir(t->image_dir, 0700) < 0)
    rc = sl_error_errno(err, errno, "mkdir %s", t->image_dir);
  if (rc == 0)
    rc = sl_store_create_entry(store(t), SL_AREA_LAYERS, t->layer_id, t->layer_dir,
                               sizeof t->layer_dir, err);
  if (rc == 0 && snprintf(t->disk, sizeof t->disk, "%s/%s", t->layer_dir, VM_LAYER_DISK) >=
                     (int)sizeof t->disk)
    rc = sl_error_set(err, ENAMETOOLONG, "path too long: %s/%s", t->layer_dir, VM_LAYER_DISK);
  return rc;
}

/* Make the folders and the pending row. */
static int begin(vm_take *t, sl_error *err) {
  int rc = make_folders(t, err);
  if (rc < 0) return rc;
  sl_snapshot_spec spec = {
      .id = t->snapshot_id,
      .source_sandbox_id = t->info->id,
      .name = t->req->name,
      .tag = t->req->tag,
      .labels = t->req->labels,
      .kind = t->req->files_only ? SL_SNAPSHOT_FS : SL_SNAPSHOT_FULL,
      .layer_id = t->layer_id,
      .layer_path = t->layer_dir,
      .image_dir = t->image_dir,
  };
  rc = sl_catalog_snapshot_begin(catalog(t), &spec, err);
  t->begun = rc == 0;
  return rc;
}

/* Allocated bytes of a file (a sparse RAM file counts what it holds). */
static int64_t allocated(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (int64_t)st.st_blocks * 512 : 0;
}

static int sync_file(const char *path, sl_error *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : sl_error_errno(err, errno, "open %s", path);
  int rc = fsync(fd) < 0 ? sl_error_errno(err, errno, "fsync %s", path) : 0;
  close(fd);
  return rc;
}

/* Sync what the take wrote before the row becomes visible, and sum it. */
static int sync_files(const vm_take *t, int64_t *total, int64_t *layer, sl_error *err) {
  static const char *const names[] = {"vm.json", "state", "ram", NULL};
  *layer = allocated(t->disk);
  *total = *layer;
  int rc = sync_file(t->disk, err);
  for (size_t i = 0; rc == 0 && !t->req->files_only && names[i]; i++) {
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/%s", t->image_dir, names[i]);
    rc = sync_file(path, err);
    *total += allocated(path);
  }
  if (rc == 0) rc = sync_file(t->layer_dir, err);
  if (rc == 0 && !t->req->files_only) rc = sync_file(t->image_dir, err);
  if (rc == 0) rc = sync_file(t->snapshot_dir, err);
  return rc;
}

/* Undo a failed take. A disk that was switched stays: the VM runs on an
 * overlay stacked on it, and its layer stays pinned as the base layer. */
static void abandon(vm_take *t) {
  sl_error ignored = {0};
  bool switched = t->disk[0] != '\0' && sl_path_exists(t->disk);
  if (t->pinned && !switched &&
      sl_catalog_sandbox_set_base_layer(catalog(t), t->info->id, t->info->base_layer_id,
                                        &ignored) < 0)
    SL_WARN("snapshot.unpin_failed", "sandbox=%s layer=%s error=\"%s\"", t->info->id,
            t->layer_id, ignored.msg);
  sl_layer_list removed = {0};
  if (t->begun) sl_catalog_snapshot_delete(catalog(t), t->snapshot_id, &removed, &ignored);
  for (size_t i = 0; i < removed.count; i++) sl_layer_remove(removed.items[i].path, &ignored);
  sl_layer_list_free(&removed);
  if (!t->begun && t->layer_dir[0] != '\0') sl_layer_remove(t->layer_dir, &ignored);
  if (t->snapshot_dir[0] != '\0') sl_layer_remove(t->snapshot_dir, &ignored);
}

static int capture(vm_take *t, sl_snapshot_timing *timing, sl_error *err) {
  sl_vm *vm = NULL;
  int rc = sl_vm_open(t->h->home, t->info->id, &vm, err);
  /* Pin the new layer first (see the top of this file). */
  if (rc == 0) rc = sl_catalog_sandbox_set_base_layer(catalog(t), t->info->id, t->layer_id, err);
  t->pinned = rc == 0;
  sl_vm_image image = {.dir = t->req->files_only ? NULL : t->image_dir, .disk = t->disk};
  sl_vm_snapshot_stats st = {0};
  if (rc == 0) rc = sl_vm_snapshot(vm, &image, &st, err);
  sl_vm_close(vm);
  if (timing != NULL) {
    timing->dump_ms = st.pause_ms;
    timing->frozen_ms = st.pause_ms;
  }
  return rc;
}

int vm_snapshot_take(sl_sandboxes *h, const sl_sandbox_info *info,
                     const vm_snapshot_request *req, sl_snapshot *out,
                     sl_snapshot_timing *timing, sl_error *err) {
  int64_t started = sl_monotonic_ms();
  vm_take t = {.h = h, .info = info, .req = req};
  int64_t total = 0, layer = 0;
  int rc = begin(&t, err);
  if (rc == 0) rc = capture(&t, timing, err);
  if (rc == 0) rc = sync_files(&t, &total, &layer, err);
  if (rc == 0) rc = sl_catalog_snapshot_commit(catalog(&t), t.snapshot_id, total, layer, out, err);
  if (rc < 0) {
    abandon(&t);
    return sl_error_wrap_subject(err, "snapshot", info->id);
  }
  if (timing != NULL) timing->total_ms = (double)(sl_monotonic_ms() - started);
  SL_INFO("snapshot.taken", "sandbox=%s snapshot=%s backend=vm kind=%s layer=%s bytes=%lld",
          info->id, t.snapshot_id, req->files_only ? "fs" : "full", t.layer_id,
          (long long)total);
  return 0;
}

int vm_snapshot_image(sl_catalog *cat, const sl_snapshot *snapshot, vm_image_paths *out,
                      sl_error *err) {
  if (snapshot->backend != SL_BACKEND_VM)
    return sl_error_set(err, EINVAL, "snapshot %s is a %s snapshot, not a VM's", snapshot->id,
                        sl_backend_name(snapshot->backend));
  sl_layer layer = {0};
  int rc = sl_catalog_layer_get(cat, snapshot->layer_id, &layer, err);
  if (rc < 0) return sl_error_wrap_subject(err, "snapshot", snapshot->id);
  int n = snprintf(out->disk, sizeof out->disk, "%s/%s", layer.path, VM_LAYER_DISK);
  sl_layer_clear(&layer);
  if (n >= (int)sizeof out->disk)
    return sl_error_set(err, ENAMETOOLONG, "layer path too long for snapshot %s", snapshot->id);
  out->has_memory = snapshot->kind == SL_SNAPSHOT_FULL;
  snprintf(out->dir, sizeof out->dir, "%s", snapshot->image_dir ? snapshot->image_dir : "");
  out->image = (sl_vm_image){.dir = out->has_memory ? out->dir : NULL, .disk = out->disk};
  return 0;
}
