/* The store: the folder tree where sandlot keeps its catalog, layers,
 * sandboxes and snapshots, and the ids that name them.
 *
 * Layout under the root (see docs/ARCHITECTURE.md, Store):
 *
 *     catalog.db  layers/<ly-id>/  templates/<name>/  sandboxes/<sb-id>/
 *     snapshots/<sn-id>/  vm/
 *
 * Ids are a kind prefix and 12 lowercase hex digits from getrandom(2):
 * "sb-" sandboxes, "sn-" snapshots, "ly-" layers, "tp-" template builds.
 * Every path helper validates the id or name it puts into a path, so a
 * value from a user can never name a file outside its folder. */
#ifndef SANDLOT_STORE_H
#define SANDLOT_STORE_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#include "error.h"

/* Length of an id without its NUL ("sn-" + 12 hex digits), and the size of
 * a buffer for one. */
#define SL_ID_LEN 15
#define SL_ID_SIZE 16

/* Maximum length of a snapshot name, tag or template name, and the size of
 * a buffer for one. */
#define SL_NAME_MAX 64
#define SL_NAME_SIZE (SL_NAME_MAX + 1)

typedef enum {
  SL_ID_SANDBOX = 0,  /* "sb-" */
  SL_ID_SNAPSHOT = 1, /* "sn-" */
  SL_ID_LAYER = 2,    /* "ly-" */
  SL_ID_TEMPLATE = 3, /* "tp-": one build of a template */
} sl_id_kind;

/* Fill `out` with a new id of `kind` from getrandom(2). Fails with EINVAL
 * for an unknown kind and with the errno of getrandom otherwise. */
int sl_id_new(sl_id_kind kind, char out[SL_ID_SIZE], sl_error *err);

/* Check that `id` is an id of `kind`: the prefix, then exactly 12 digits
 * 0-9a-f (no uppercase, no other character). Returns 0 or fails with
 * EINVAL, quoting the value: "invalid snapshot id: \"../x\" (expected sn-
 * and 12 hex digits)". NULL and "" are invalid. */
int sl_id_validate(sl_id_kind kind, const char *id, sl_error *err);

/* The kind whose prefix `id` starts with, or -1 when it has none of them.
 * Only the prefix is looked at; use sl_id_validate() for the rest. */
int sl_id_kind_of(const char *id);

/* "sandbox", "snapshot", "layer" or "template" (for messages). */
const char *sl_id_kind_name(sl_id_kind kind);

/* Check a snapshot name, snapshot tag or template name: 1 to SL_NAME_MAX
 * characters from [A-Za-z0-9._-], starting with a letter or digit. A name
 * must not start with an id prefix ("sb-", "sn-", "ly-", "tp-"), so that a
 * lookup string is never both a name and an id. `field` names the value
 * in the message ("snapshot name"). Fails with EINVAL. */
int sl_name_validate(const char *field, const char *name, sl_error *err);

/* Write `value` into `buf` for an error message: at most 64 characters,
 * non-printable bytes as \xNN, "..." when cut, "(null)" for NULL. Returns
 * buf. */
const char *sl_quote(const char *value, char *buf, size_t size);
#define SL_QUOTE_SIZE 300

/* The maximum length of a store root. sl_store_pick_root() leaves 256
 * bytes of PATH_MAX for the paths inside the store, so that
 * "<root>/sandboxes/<id>/x" always fits a PATH_MAX buffer. */
#define SL_STORE_ROOT_MAX (PATH_MAX - 256)

/* An open store: its absolute root, without a trailing slash. */
typedef struct sl_store {
  char root[PATH_MAX];
} sl_store;

/* Choose the store root from explicit inputs (the pure part of
 * sl_store_resolve_root):
 *   1. `sandlot_home` when not NULL or "": it must be absolute;
 *   2. /var/lib/sandlot when `euid` is 0;
 *   3. `xdg_data_home`/sandlot when it is absolute (the XDG base directory
 *      specification requires ignoring a relative value);
 *   4. `home`/.local/share/sandlot; `home` must then be absolute.
 * Trailing slashes are removed. Fails with EINVAL (relative SANDLOT_HOME,
 * no usable home) or ENAMETOOLONG (the root leaves less than 256 bytes of
 * PATH_MAX for the paths inside the store). */
int sl_store_pick_root(uid_t euid, const char *sandlot_home, const char *xdg_data_home,
                       const char *home, char *buf, size_t size, sl_error *err);

/* sl_store_pick_root() with geteuid(), $SANDLOT_HOME, $XDG_DATA_HOME and
 * $HOME (or the password database entry of the user when HOME is unset).
 * A SANDLOT_HOME that is set but empty fails with EINVAL: it is more
 * likely a mistake than a request for the default store. */
int sl_store_resolve_root(char *buf, size_t size, sl_error *err);

/* Open the store at `root` (NULL: sl_store_resolve_root), creating the root
 * and its folders when missing. Missing parents of the root are created
 * with mode 0700, as are the root and every folder of the tree. Existing
 * folders are checked: each must be a real directory (not a symlink) owned
 * by the effective user and not writable by group or others. Otherwise the
 * call fails with EPERM and names the folder, because another user could
 * swap files under sandlot. Idempotent. */
int sl_store_open(sl_store *store, const char *root, sl_error *err);

/* Whether a store exists at `root`: 1 when it has a catalog, 0 when the
 * root or its catalog is missing. Creates nothing, so read-only callers
 * (listing sandboxes) can report "none" without making a store. Fails
 * with ENOTDIR when the root is not a folder. */
int sl_store_exists(const char *root, sl_error *err);

/* Folders of the store that hold one entry per id or name. */
typedef enum {
  SL_AREA_SANDBOXES = 0, /* sandboxes/<sb-id> */
  SL_AREA_SNAPSHOTS = 1, /* snapshots/<sn-id> */
  SL_AREA_LAYERS = 2,    /* layers/<ly-id> */
  SL_AREA_TEMPLATES = 3, /* templates/<template name> */
} sl_store_area;

/* Write the path of an entry, or of `sub` inside it, into `buf`:
 * "<root>/sandboxes/<id>[/<sub>]". `key` must be a valid id of the area's
 * kind, or a valid template name for SL_AREA_TEMPLATES. `sub` may be NULL;
 * otherwise it must be a relative path whose components are neither empty,
 * "." nor "..". Fails with EINVAL for a bad key or sub and ENAMETOOLONG
 * when the result does not fit `size`. Nothing is created. */
int sl_store_path(const sl_store *store, sl_store_area area, const char *key,
                  const char *sub, char *buf, size_t size, sl_error *err);

/* Shorthands for sl_store_path() on one area. */
int sl_store_sandbox_path(const sl_store *store, const char *sandbox_id, const char *sub,
                          char *buf, size_t size, sl_error *err);
int sl_store_snapshot_path(const sl_store *store, const char *snapshot_id, const char *sub,
                           char *buf, size_t size, sl_error *err);
int sl_store_layer_path(const sl_store *store, const char *layer_id, const char *sub,
                        char *buf, size_t size, sl_error *err);
int sl_store_template_path(const sl_store *store, const char *name, const char *sub,
                           char *buf, size_t size, sl_error *err);

/* Write "<root>/catalog.db" into `buf`. Fails with ENAMETOOLONG. */
int sl_store_catalog_path(const sl_store *store, char *buf, size_t size, sl_error *err);

/* Create the folder of a new entry with mode 0700 and write its path into
 * `buf` (which may be NULL when size is 0). Fails with EEXIST when the
 * entry exists, so two callers never share one folder, and with EINVAL or
 * ENAMETOOLONG as sl_store_path() does. */
int sl_store_create_entry(const sl_store *store, sl_store_area area, const char *key,
                          char *buf, size_t size, sl_error *err);

#endif
