/* Enumerations shared by the sandbox API and the catalog.
 *
 * NOTE: these mirror the names and values of the catalog's enums
 * (sl_backend, sl_sandbox_state, sl_on_timeout) so that this file can be
 * dropped in favour of catalog.h once the catalog is on main. */
#ifndef SANDLOT_SANDBOX_TYPES_H
#define SANDLOT_SANDBOX_TYPES_H

#include "error.h"

typedef enum { SL_BACKEND_PROCESS = 0, SL_BACKEND_VM = 1 } sl_backend;

typedef enum {
  SL_SANDBOX_CREATING = 0, /* the monitor is setting the sandbox up */
  SL_SANDBOX_RUNNING = 1,
  SL_SANDBOX_FROZEN = 2,   /* stopped by the freezer, memory kept */
  SL_SANDBOX_PAUSED = 3,   /* dumped to disk, no process left */
  SL_SANDBOX_DEAD = 4,
} sl_sandbox_state;

typedef enum {
  SL_ON_TIMEOUT_KILL = 0,
  SL_ON_TIMEOUT_PAUSE = 1,    /* snapshot memory and filesystem, then stop */
  SL_ON_TIMEOUT_PAUSE_FS = 2, /* keep the filesystem only, then stop */
} sl_on_timeout;

/* "process" "vm"; "creating" "running" "frozen" "paused" "dead"; "kill"
 * "pause" "pause_fs". A value out of range gives "invalid". */
const char *sl_backend_name(sl_backend backend);
const char *sl_sandbox_state_name(sl_sandbox_state state);
const char *sl_on_timeout_name(sl_on_timeout action);

/* Parse a name from the list above; EINVAL naming the value otherwise. */
int sl_backend_parse(const char *name, sl_backend *out, sl_error *err);
int sl_sandbox_state_parse(const char *name, sl_sandbox_state *out, sl_error *err);
int sl_on_timeout_parse(const char *name, sl_on_timeout *out, sl_error *err);

#endif
