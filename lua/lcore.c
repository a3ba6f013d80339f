#include "lcore.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "embedded.h"
#include "host.h"
#include "sandlot_config.h"

/* core.set_exit_status(n): the host's exit status when the main task
 * ends without failing; for host commands that print their own errors. */
static int l_set_exit_status(lua_State *L) {
  lua_Integer status = luaL_checkinteger(L, 1);
  luaL_argcheck(L, status >= 0 && status <= 255, 1, "expected 0 to 255");
  sl_host_set_exit_status((int)status);
  return 0;
}

/* Whether `source` (a chunk name) is one of the embedded modules. */
static int is_embedded_source(const char *source) {
  if (source == NULL || source[0] != '@') return 0;
  for (const sl_embedded_module *m = sl_embedded_modules; m->name != NULL; m++)
    if (strcmp(source + 1, m->path) == 0) return 1;
  return 0;
}

/* sl_user_position() from stack level `first` on. */
static int position_from(lua_State *T, int first, char *buf, size_t len) {
  lua_Debug ar;
  for (int level = first; lua_getstack(T, level, &ar); level++) {
    if (!lua_getinfo(T, "Sl", &ar) || ar.currentline <= 0) continue;
    if (is_embedded_source(ar.source)) continue;
    snprintf(buf, len, "%s:%d", ar.short_src, ar.currentline);
    return 1;
  }
  return 0;
}

int sl_user_position(lua_State *T, char *buf, size_t len) { return position_from(T, 0, buf, len); }

/* Push "source:line: " of the innermost Lua function that called the
 * running C function (level 0) and is not part of an embedded module,
 * or "" when there is none. */
static void push_user_where(lua_State *L) {
  char where[LUA_IDSIZE + 32];
  if (position_from(L, 1, where, sizeof where))
    lua_pushfstring(L, "%s: ", where);
  else
    lua_pushliteral(L, "");
}

int sl_raise(lua_State *L, const char *fmt, ...) {
  push_user_where(L);
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 2);
  return lua_error(L);
}

int sl_arg_error(lua_State *L, const char *fname, int arg, const char *message) {
  return sl_raise(L, "%s: bad argument #%d (%s)", fname, arg, message);
}

const char *sl_check_cstring(lua_State *L, int index) {
  size_t len;
  const char *s = luaL_checklstring(L, index, &len);
  if (strlen(s) != len) luaL_argerror(L, index, "string contains a NUL byte");
  return s;
}

const char *sl_to_cstring(lua_State *L, int index, const char *name) {
  if (lua_type(L, index) != LUA_TSTRING) return NULL;
  size_t len;
  const char *s = lua_tolstring(L, index, &len);
  if (strlen(s) != len) luaL_error(L, "%s contains a NUL byte", name);
  return s;
}

int luaopen_sandlot_core(lua_State *L) {
  lua_newtable(L);
  lua_pushliteral(L, SANDLOT_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushcfunction(L, l_set_exit_status);
  lua_setfield(L, -2, "set_exit_status");
#define SL_OPEN_BINDING(name) sl_open_##name(L);
  SL_BINDINGS(SL_OPEN_BINDING)
#undef SL_OPEN_BINDING
  return 1;
}

static const sl_embedded_module *find_embedded(const char *name) {
  for (const sl_embedded_module *m = sl_embedded_modules; m->name != NULL; m++)
    if (strcmp(m->name, name) == 0) return m;
  return NULL;
}

/* A package.searchers entry for the embedded modules. Returns the loader
 * and the module's path, or a message naming the module it did not find. */
static int search_embedded(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const sl_embedded_module *m = find_embedded(name);
  if (m == NULL) {
    lua_pushfstring(L, "no module '%s' embedded in sandlot", name);
    return 1;
  }
  lua_pushfstring(L, "@%s", m->path);
  int rc = luaL_loadbufferx(L, (const char *)m->data, m->size, lua_tostring(L, -1), "t");
  if (rc != LUA_OK)
    return luaL_error(L, "error loading embedded module '%s': %s", name, lua_tostring(L, -1));
  lua_pushfstring(L, "embedded:%s", m->path);
  return 2;
}

void sl_install_modules(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_sandlot_core);
  lua_setfield(L, -2, "sandlot.core");
  lua_pop(L, 1);

  /* Right after the preload searcher, so that the embedded modules win
   * over files of the same name on package.path. */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchers");
  lua_Integer n = luaL_len(L, -1);
  for (lua_Integer i = n; i >= 2; i--) {
    lua_rawgeti(L, -1, i);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushcfunction(L, search_embedded);
  lua_rawseti(L, -2, 2);
  lua_pop(L, 2);
}
