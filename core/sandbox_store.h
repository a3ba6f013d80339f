/* Sandbox records on the catalog, shared by the API and the monitors.
 *
 * A record is the catalog's sandboxes row (core/catalog.h) seen as an
 * sl_sandbox_info: limits live in the row's options JSON, labels in its
 * labels JSON, cgroup paths in its cgroups JSON. How a sandbox ended
 * (end_reason) is written next to it, to sandboxes/<id>/end_reason,
 * because the row has no column for it. */
#ifndef SANDLOT_SANDBOX_STORE_H
#define SANDLOT_SANDBOX_STORE_H

#include <stddef.h>

#include "catalog.h"
#include "error.h"
#include "sandbox.h"
#include "store.h"

typedef struct sl_sbstore sl_sbstore;

/* Open the store at `home` and its catalog. */
int sl_sbstore_open(const char *home, sl_sbstore **out, sl_error *err);
void sl_sbstore_close(sl_sbstore *s);
sl_catalog *sl_sbstore_catalog(sl_sbstore *s);
const sl_store *sl_sbstore_store(const sl_sbstore *s);

/* Write a fresh sandbox id ("sb-" and 12 hex digits). */
int sl_sbstore_new_id(char id[SL_ID_SIZE], sl_error *err);

/* Create the sandbox's folder and insert its row ("creating") from
 * `info` (id, backend, template, limits, labels, timeout). Writes the
 * row as recorded, base layer included, back to `info`. */
int sl_sbstore_insert(sl_sbstore *s, sl_sandbox_info *info, sl_error *err);

/* ENOENT for an unknown or malformed id. */
int sl_sbstore_get(sl_sbstore *s, const char *id, sl_sandbox_info *out, sl_error *err);

/* Every record, oldest first; free *out with free(). */
int sl_sbstore_list(sl_sbstore *s, sl_sandbox_info **out, size_t *count, sl_error *err);

/* Record PID 1, the monitor and the cgroups ("controller=path" lines) and
 * move the sandbox to running. */
int sl_sbstore_set_running(sl_sbstore *s, const char *id, pid_t init_pid, uint64_t init_start,
                           pid_t monitor_pid, const char *cgroups, sl_error *err);

/* Move between running and frozen (ESRCH once dead). */
int sl_sbstore_set_state(sl_sbstore *s, const char *id, sl_sandbox_state state, sl_error *err);

int sl_sbstore_set_deadline(sl_sbstore *s, const char *id, int64_t timeout_ms,
                            int64_t deadline_ms, sl_on_timeout on_timeout, sl_error *err);

/* Mark the sandbox dead with its exit (status 0..255 and signal 0, or -1
 * and the signal, or -1 and 0 when unknown) and why it ended. ESRCH when
 * it has ended before with a recorded exit. */
int sl_sbstore_set_ended(sl_sbstore *s, const char *id, int exit_status, int exit_signal,
                         const char *reason, sl_error *err);

/* Drop the row and the folder of a sandbox that never ran. */
int sl_sbstore_delete(sl_sbstore *s, const char *id, sl_error *err);

#endif
