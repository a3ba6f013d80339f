/* The per-sandbox operation lock (sandboxes/<id>/op.lock): one
 * state-changing operation (freeze, thaw, kill, snapshot, the monitor's
 * timeout action) at a time. An flock, so a crashed holder releases it. */
#ifndef SANDLOT_OPLOCK_H
#define SANDLOT_OPLOCK_H

#include "error.h"

/* Take the lock of the sandbox whose directory is `sandbox_dir`, waiting
 * up to `timeout_ms` (0: try once). Returns the lock fd, EBUSY when
 * another operation holds it past the timeout. */
int sl_op_lock(const char *sandbox_dir, int timeout_ms, sl_error *err);

/* Release a lock from sl_op_lock(); a negative fd is ignored. */
void sl_op_unlock(int fd);

#endif
