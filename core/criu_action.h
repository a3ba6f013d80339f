/* The CRIU action script: `sandlot-criu-action`, which CRIU execs with no
 * arguments for every action of a dump or restore.
 *
 * CRIU sets CRTOOLS_SCRIPT_ACTION (and CRTOOLS_INIT_PID, the host pid of
 * the tree's root); sandlot passes its requests through CRIU's
 * environment:
 *
 *   pre-dump          SANDLOT_FREEZE_CGROUP=<freezer dir>: freeze the tree
 *                     with 1 ms polls before CRIU does (CRIU then leaves it
 *                     frozen after the dump, and the caller thaws it);
 *   post-dump         SANDLOT_CAPTURE_UPPER=<dir> SANDLOT_CAPTURE_LAYER=<dir>:
 *                     copy the sandbox's upper layer while the tree is
 *                     still frozen (CRIU resumes it only after this action);
 *                     SANDLOT_CAPTURE_ROOT=<dir> SANDLOT_CAPTURE_TMPFS=<keys>
 *                     SANDLOT_CAPTURE_TMPFS_TO=<dir>: copy each tmpfs mount
 *                     of core/proc_mounts.h named in the space-separated
 *                     keys, from <root><path> (without the mounts below it)
 *                     to <to>/<key>; the dump leaves them out of the images.
 *
 * Every other action, and an action without its variables, succeeds
 * without doing anything. A failing action fails the CRIU operation. */
#ifndef SANDLOT_CRIU_ACTION_H
#define SANDLOT_CRIU_ACTION_H

#include <stddef.h>

#include "error.h"

#define SL_CRIU_ACTION_BINARY "sandlot-criu-action"

/* Perform `action` with the variables above from the environment. */
int sl_criu_action_run(const char *action, sl_error *err);

/* Path of the action binary: $SANDLOT_CRIU_ACTION when set (tests), else
 * the sibling of the running executable, else the one in
 * $SANDLOT_BUILD_DIR when the sibling is missing. */
int sl_criu_action_path(char *buf, size_t size, sl_error *err);

#endif
