/* sandlot.core.log(level, event, text): Lua's way into the core log sink. */
#include <lauxlib.h>

#include "lcore.h"
#include "log.h"

static int l_log(lua_State *L) {
  static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
  int level = luaL_checkoption(L, 1, NULL, levels);
  const char *event = luaL_checkstring(L, 2);
  const char *text = luaL_optstring(L, 3, "");
  sl_log((sl_log_level)level, event, "%s", text);
  return 0;
}

static int l_log_level(lua_State *L) {
  static const char *const names[] = {"debug", "info", "warn", "error", "off"};
  lua_pushstring(L, names[sl_log_get_level()]);
  return 1;
}

void sl_open_log(lua_State *L) {
  static const luaL_Reg functions[] = {
      {"log", l_log},
      {"log_level", l_log_level},
      {NULL, NULL},
  };
  luaL_setfuncs(L, functions, 0);
}
