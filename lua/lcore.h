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

/* Make require find sandlot.core and the Lua modules embedded in the
 * binary (the .lua files under lua/sandlot). */
void sl_install_modules(lua_State *L);

#endif
