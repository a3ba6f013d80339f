/* Persistence of sandbox records, shared by the API and the monitors.
 *
 * NOTE: records are files (sandboxes/<id>/record, replaced atomically,
 * read-modify-write under an flock) until the SQLite catalog lands; this
 * interface is what moves onto the catalog's sandboxes table. */
#ifndef SANDLOT_SANDBOX_STORE_H
#define SANDLOT_SANDBOX_STORE_H

#include <stddef.h>

#include "error.h"
#include "sandbox.h"

typedef struct sl_sbstore sl_sbstore;

/* Changes one record in place; a negative return aborts the update. */
typedef int (*sl_sbstore_update_fn)(sl_sandbox_info *info, void *data, sl_error *err);

int sl_sbstore_open(const char *home, sl_sbstore **out, sl_error *err);
void sl_sbstore_close(sl_sbstore *store);

/* Write a fresh sandbox id: "sb-" and 12 hex digits from getrandom(2). */
int sl_sbstore_new_id(char id[SL_SANDBOX_ID_MAX], sl_error *err);

/* Insert a new record; EEXIST when the id is taken. */
int sl_sbstore_insert(sl_sbstore *store, const sl_sandbox_info *info, sl_error *err);

/* ENOENT for an unknown id. */
int sl_sbstore_get(sl_sbstore *store, const char *id, sl_sandbox_info *out, sl_error *err);

/* Apply `fn` to the record of `id` atomically with respect to other
 * updates. */
int sl_sbstore_update(sl_sbstore *store, const char *id, sl_sbstore_update_fn fn, void *data,
                      sl_error *err);

int sl_sbstore_delete(sl_sbstore *store, const char *id, sl_error *err);

/* Every record, oldest first; free *out with free(). */
int sl_sbstore_list(sl_sbstore *store, sl_sandbox_info **out, size_t *count, sl_error *err);

/* Serialize `info` as "key=value" lines, escaping backslash and newline
 * in values. Returns the length, or -ENOSPC when `buf` is too small. */
int sl_sbstore_format(const sl_sandbox_info *info, char *buf, size_t len);

/* Parse text written by sl_sbstore_format(); unknown keys are ignored so
 * that older readers accept newer records. EINVAL on a malformed line. */
int sl_sbstore_parse(const char *text, sl_sandbox_info *out, sl_error *err);

#endif
