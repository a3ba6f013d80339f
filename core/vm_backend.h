/* Shared by the files of the VM backend (vm_backend*.c) and the VM
 * monitor; not part of the core API. */
#ifndef SANDLOT_VM_BACKEND_H
#define SANDLOT_VM_BACKEND_H

#include <limits.h>
#include <stdbool.h>

#include "backend.h"
#include "snapshot.h"
#include "vm.h"

/* A VM snapshot in the store (see vm_backend_snapshot.c). */
#define VM_SNAPSHOT_SOURCE_FILE "source"
#define VM_SNAPSHOT_IMAGE_DIR "vm"
#define VM_LAYER_DISK "disk.qcow2"

typedef struct vm_snapshot_request {
  const char *name;   /* NULL or a snapshot name */
  const char *tag;    /* NULL or a tag */
  const char *labels; /* NULL or a JSON object of strings */
  bool files_only;    /* kind "fs": the disk alone */
} vm_snapshot_request;

/* Take a snapshot of a running or frozen VM sandbox as a catalog
 * snapshot; the caller holds the op.lock. On failure no row or folder is
 * left, except the layer of a disk that was switched (it stays the
 * sandbox's base layer). */
int vm_snapshot_take(sl_sandboxes *h, const sl_sandbox_info *info,
                     const vm_snapshot_request *req, sl_snapshot *out,
                     sl_snapshot_timing *timing, sl_error *err);

/* The files of a VM snapshot row. */
typedef struct vm_image_paths {
  char dir[PATH_MAX];  /* image_dir; "" for a files-only snapshot */
  char disk[PATH_MAX]; /* <layer path>/disk.qcow2 */
  bool has_memory;
  sl_vm_image image;   /* points into this struct: do not copy it */
} vm_image_paths;

int vm_snapshot_image(sl_catalog *cat, const sl_snapshot *snapshot, vm_image_paths *out,
                      sl_error *err);

/* Ask the monitor to pause the VM, then wait for the monitor to exit. The
 * caller holds the op.lock. */
int vm_pause(sl_sandboxes *h, const sl_sandbox_info *info, bool files_only, sl_error *err);

/* Start a monitor that resumes a paused VM. */
int vm_resume(sl_sandboxes *h, const sl_sandbox_info *info, sl_error *err);

#endif
