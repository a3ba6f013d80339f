/* Internal to lua/: what lsandbox.c shares with the other bindings (the
 * template progress sink, for the test binding; the core handle and the
 * record table, for lsnapshot.c). */
#ifndef SANDLOT_LSANDBOX_H
#define SANDLOT_LSANDBOX_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#include "sandbox.h"

/* Queue one line of template build output for the loop thread, which
 * passes it to the Lua function set by core.on_template_progress() or
 * prints it to stderr. Safe from any thread. */
void sl_lua_progress_line(const char *line, void *data);

/* The host process's core handle, opened on first use. Pool threads
 * only. With `create` the first call opens the store, creating it when
 * missing. Without it a store that does not exist yet is left alone:
 * `*out` is then NULL, and read-only calls report no sandboxes and no
 * snapshots. */
int sl_lua_sandboxes(sl_sandboxes **out, bool create, sl_error *err);

/* The root of the store this process uses or would use, for messages
 * about a store that does not exist ("(none)" when it cannot be
 * resolved). Safe from any thread. */
void sl_lua_store_root(char *buf, size_t len);

/* Push a sandbox record as the table Sandbox objects are made from. */
void sl_lua_push_sandbox(lua_State *L, const sl_sandbox_info *info);

#endif
