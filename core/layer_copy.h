/* Copying an overlayfs upper directory into a new layer directory.
 *
 * The copy keeps what overlayfs reads from a lower layer. That is
 * whiteouts (character devices 0:0) and opaque directories
 * (trusted.overlay.opaque), but also symlinks as links, hard links within
 * the tree, fifos, sockets, device nodes, owners, modes, times, user and
 * security xattrs, and holes in sparse files. Other trusted.overlay.* attributes describe the upper
 * layer's own index and origin and are dropped.
 *
 * The source belongs to a sandbox and is untrusted: the walk uses
 * directory file descriptors with O_NOFOLLOW and never follows a symlink.
 * ext4 has no reflink, so file data is copied (copy_file_range). */
#ifndef SANDLOT_LAYER_COPY_H
#define SANDLOT_LAYER_COPY_H

#include <stdint.h>

#include "error.h"

typedef struct sl_layer_copy_stats {
  uint64_t files;   /* inodes created, directories included */
  uint64_t bytes;   /* file data copied */
  uint64_t links;   /* hard links re-created */
} sl_layer_copy_stats;

/* Copy the tree at `src_dir` into `dst_dir`, which must not exist; its
 * parent must. On failure `dst_dir` may hold a partial copy, which the
 * caller removes (sl_layer_remove). `stats` may be NULL. */
int sl_layer_copy(const char *src_dir, const char *dst_dir, sl_layer_copy_stats *stats,
                  sl_error *err);

/* Flags of sl_layer_copy_ex(). */
#define SL_COPY_ONE_FILE_SYSTEM 1u /* leave mount points below the root empty */
#define SL_COPY_INTO_EXISTING 2u   /* `dst_dir` exists: copy into it */

/* sl_layer_copy() with flags. */
int sl_layer_copy_ex(const char *src_dir, const char *dst_dir, unsigned flags,
                     sl_layer_copy_stats *stats, sl_error *err);

/* Remove the tree at `dir` without following symlinks. A missing `dir`
 * is not an error. */
int sl_layer_remove(const char *dir, sl_error *err);

/* Add up the allocated bytes (st_blocks) of every inode under `dir`,
 * counting hard links once per name. */
int sl_layer_size(const char *dir, uint64_t *bytes, sl_error *err);

/* Flush the file system that contains `dir` (syncfs). */
int sl_layer_sync(const char *dir, sl_error *err);

#endif
