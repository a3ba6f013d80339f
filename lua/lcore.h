/* The internal C module sandlot.core and its list of bindings.
 *
 * Each binding file lua/l<name>.c defines `void sl_open_<name>(lua_State *L)`
 * that adds its functions (and registers its metatables) into the module
 * table on top of the stack, leaving the stack as it found it. To add a
 * binding, add one X(<name>) line to SL_BINDINGS below. Lua code reaches
 * the functions through require "sandlot.core"; scripts use the public
 * module require "sandlot". */
#ifndef SANDLOT_LCORE_H
#define SANDLOT_LCORE_H

#include <lua.h>
#include <stdarg.h>
#include <stddef.h>

#define SL_BINDINGS(X) \
  X(task)              \
  X(log)               \
  X(sandbox)           \
  X(snapshot)          \
  X(agent)             \
  X(process)           \
  X(testing)

#define SL_DECLARE_BINDING(name) void sl_open_##name(lua_State *L);
SL_BINDINGS(SL_DECLARE_BINDING)
#undef SL_DECLARE_BINDING

int luaopen_sandlot_core(lua_State *L);

/* Raise the formatted message as an error, prefixed with the position of
 * the innermost caller outside sandlot's embedded modules: a binding
 * called through the Lua modules of lua/sandlot then points at the user's line, not
 * at the module's. Does not return. */
int sl_raise(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Write "file:line" of the innermost Lua function on T's stack that is
 * not part of an embedded module (the user's code, for a task suspended
 * inside a sandlot call) into `buf`. Returns 0 when there is none. */
int sl_user_position(lua_State *T, char *buf, size_t len);

/* luaL_argerror with the public name: raises "FNAME: bad argument #ARG
 * (MESSAGE)" at the user's line (see sl_raise). `arg` counts as the user
 * writes the call, so for a method the first argument after self is 1. */
int sl_arg_error(lua_State *L, const char *fname, int arg, const char *message);

/* The string at `index` for a C API. Raises when it is not a string or
 * has a NUL byte, where C would cut it short: the Lua modules return
 * EINVAL for such values before they reach a binding. */
const char *sl_check_cstring(lua_State *L, int index);

/* The string at `index` (a table field `name`) for a C API, or NULL when
 * it is not a string. Raises when it has a NUL byte. */
const char *sl_to_cstring(lua_State *L, int index, const char *name);

/* Make require find sandlot.core and the Lua modules embedded in the
 * binary (the .lua files under lua/sandlot). */
void sl_install_modules(lua_State *L);

#endif
