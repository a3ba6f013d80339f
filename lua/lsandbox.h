/* Internal to lua/: what lsandbox.c shares with the other bindings (the
 * template progress sink, for the test binding; the core handle and the
 * record table, for lsnapshot.c). */
#ifndef SANDLOT_LSANDBOX_H
#define SANDLOT_LSANDBOX_H

#include <lua.h>

#include "sandbox.h"

/* Queue one line of template build output for the loop thread, which
 * passes it to the Lua function set by core.on_template_progress() or
 * prints it to stderr. Safe from any thread. */
void sl_lua_progress_line(const char *line, void *data);

/* The host process's core handle, opened on first use. Pool threads
 * only: the first call opens the store. */
int sl_lua_sandboxes(sl_sandboxes **out, sl_error *err);

/* Push a sandbox record as the table Sandbox objects are made from. */
void sl_lua_push_sandbox(lua_State *L, const sl_sandbox_info *info);

#endif
