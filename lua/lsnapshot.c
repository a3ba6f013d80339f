/* sandlot.core bindings of the snapshot calls of the sandbox API
 * (core/sandbox.h): snapshot, pause, resume, connect and rollback of a
 * sandbox, and getting, listing and deleting snapshots. Each runs on the
 * uv threadpool while the calling task is suspended, on the core handle
 * that lsandbox.c opens.
 *
 * Snapshots are pushed as tables: id, name, tag, labels (a table),
 * sandbox_id, parent_id, template, kind ("full" or "fs"), backend,
 * layer_id, size (bytes), created_at and expires_at (seconds since the
 * epoch). A snapshot just taken also has pause (seconds the sandbox was
 * frozen) and duration (seconds of the whole call). */
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "async.h"
#include "json_flat.h"
#include "lcore.h"
#include "lsandbox.h"
#include "sandbox.h"

typedef enum {
  OP_SNAPSHOT,
  OP_PAUSE,
  OP_RESUME,
  OP_CONNECT,
  OP_ROLLBACK,
  OP_GET,
  OP_LIST,
  OP_DELETE,
} snap_op;

typedef struct {
  snap_op op;
  char *id;                  /* sandbox id */
  char *ref;                 /* snapshot reference */
  char *name, *tag, *label, *cursor;
  char **labels;             /* "key=value", NULL-terminated */
  int limit;
  bool files_only;
  int wait_ms;
  sl_snapshot snapshot;
  sl_snapshot_timing timing;
  sl_snapshot_page page;
  sl_sandbox_info info;
  int rc;
  sl_error err;
} snap_work;

/* Pool thread: the result of a call when no store exists: no snapshots
 * to list, and no snapshot or sandbox to find. */
static void run_without_store(snap_work *w) {
  char root[PATH_MAX], quoted[SL_SUBJECT_MAX];
  if (w->op == OP_LIST) return;
  sl_lua_store_root(root, sizeof root);
  if (w->op == OP_GET || w->op == OP_DELETE)
    w->rc = sl_error_set(&w->err, ENOENT, "snapshot not found (no store at %s): %s", root,
                         sl_subject(quoted, sizeof quoted, w->ref));
  else
    w->rc = sl_error_set(&w->err, ENOENT, "sandbox not found (no store at %s): %s", root,
                         sl_subject(quoted, sizeof quoted, w->id));
}

static void work_run(void *data) {
  snap_work *w = data;
  sl_sandboxes *h;
  /* Only a create makes a store: every call here needs one that exists. */
  w->rc = sl_lua_sandboxes(&h, false, &w->err);
  if (w->rc < 0) return;
  if (h == NULL) {
    run_without_store(w);
    return;
  }
  sl_snapshot_opts snap = {w->name, w->tag, (const char *const *)w->labels, w->files_only,
                           w->wait_ms};
  sl_pause_opts pause = {w->files_only, w->wait_ms};
  sl_snapshot_query query = {w->ref, w->id, w->label, w->limit, w->cursor};
  switch (w->op) {
  case OP_SNAPSHOT:
    w->rc = sl_sandbox_snapshot(h, w->id, &snap, &w->snapshot, &w->timing, &w->err);
    break;
  case OP_PAUSE: w->rc = sl_sandbox_pause(h, w->id, &pause, &w->err); break;
  case OP_RESUME: w->rc = sl_sandbox_resume(h, w->id, &w->info, &w->err); break;
  case OP_CONNECT: w->rc = sl_sandbox_connect(h, w->id, &w->info, &w->err); break;
  case OP_ROLLBACK: w->rc = sl_sandbox_rollback(h, w->id, w->ref, &w->err); break;
  case OP_GET: w->rc = sl_snapshots_get(h, w->ref, &w->snapshot, &w->err); break;
  case OP_LIST: w->rc = sl_snapshots_list(h, &query, &w->page, &w->err); break;
  case OP_DELETE: w->rc = sl_snapshots_delete(h, w->ref, &w->err); break;
  }
}

static void set_string(lua_State *L, const char *key, const char *value) {
  if (value == NULL || value[0] == '\0') return;
  lua_pushstring(L, value);
  lua_setfield(L, -2, key);
}

static void set_seconds(lua_State *L, const char *key, double ms) {
  if (ms <= 0) return;
  lua_pushnumber(L, ms / 1000.0);
  lua_setfield(L, -2, key);
}

static void push_label(const char *key, const char *value, int is_string, void *data) {
  (void)is_string;
  lua_State *L = data;
  lua_pushstring(L, value);
  lua_setfield(L, -2, key);
}

static void push_snapshot(lua_State *L, const sl_snapshot *sn) {
  lua_createtable(L, 0, 14);
  set_string(L, "id", sn->id);
  set_string(L, "name", sn->name);
  set_string(L, "tag", sn->tag);
  lua_newtable(L);
  sl_json_each(sn->labels, push_label, L);
  lua_setfield(L, -2, "labels");
  set_string(L, "sandbox_id", sn->source_sandbox_id);
  set_string(L, "parent_id", sn->parent_id);
  set_string(L, "template", sn->template_name);
  set_string(L, "kind", sl_snapshot_kind_name(sn->kind));
  set_string(L, "backend", sl_backend_name(sn->backend));
  set_string(L, "layer_id", sn->layer_id);
  lua_pushinteger(L, sn->size_bytes);
  lua_setfield(L, -2, "size");
  set_seconds(L, "created_at", (double)sn->created_at);
  set_seconds(L, "expires_at", (double)sn->expires_at);
}

static int work_push(lua_State *T, void *data) {
  snap_work *w = data;
  if (w->rc < 0) return sl_push_error(T, &w->err);
  switch (w->op) {
  case OP_SNAPSHOT:
    push_snapshot(T, &w->snapshot);
    lua_pushnumber(T, w->timing.frozen_ms / 1000.0);
    lua_setfield(T, -2, "pause");
    lua_pushnumber(T, w->timing.total_ms / 1000.0);
    lua_setfield(T, -2, "duration");
    return 1;
  case OP_GET:
    push_snapshot(T, &w->snapshot);
    return 1;
  case OP_RESUME:
  case OP_CONNECT:
    sl_lua_push_sandbox(T, &w->info);
    return 1;
  case OP_LIST:
    lua_createtable(T, 0, 3);
    lua_createtable(T, (int)w->page.count, 0);
    for (size_t i = 0; i < w->page.count; i++) {
      push_snapshot(T, &w->page.items[i]);
      lua_rawseti(T, -2, (lua_Integer)i + 1);
    }
    lua_setfield(T, -2, "items");
    lua_pushboolean(T, w->page.has_next);
    lua_setfield(T, -2, "has_next");
    set_string(T, "cursor", w->page.next_cursor);
    return 1;
  default:
    lua_pushboolean(T, 1);
    return 1;
  }
}

static void work_free(void *data) {
  snap_work *w = data;
  char *strings[] = {w->id, w->ref, w->name, w->tag, w->label, w->cursor};
  for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) free(strings[i]);
  for (char **p = w->labels; p && *p; p++) free(*p);
  free(w->labels);
  sl_snapshot_clear(&w->snapshot);
  sl_snapshot_page_free(&w->page);
  free(w);
}

static snap_work *work_new(lua_State *L, snap_op op, const char *fname) {
  sl_async_check(L, fname);
  snap_work *w = calloc(1, sizeof *w);
  if (w == NULL) luaL_error(L, "not enough memory");
  w->op = op;
  return w;
}

/* Copy the string at `index` (NULL when it is not a string) into *slot.
 * Raises on a NUL byte, which the Lua layer rejects with EINVAL first. */
static void copy_arg(lua_State *L, snap_work *w, int index, const char *name, char **slot) {
  size_t len = 0;
  const char *value = lua_type(L, index) == LUA_TSTRING ? lua_tolstring(L, index, &len) : NULL;
  if (value == NULL) return;
  if (strlen(value) != len) {
    work_free(w);
    luaL_error(L, "%s contains a NUL byte", name);
  }
  *slot = strdup(value);
  if (*slot == NULL) {
    work_free(w);
    luaL_error(L, "not enough memory");
  }
}

/* Copy the string field `key` of the table at `index`. */
static void copy_field(lua_State *L, snap_work *w, int index, const char *key, char **slot) {
  lua_getfield(L, index, key);
  copy_arg(L, w, -1, key, slot);
  lua_pop(L, 1);
}

static void copy_labels(lua_State *L, snap_work *w, int index) {
  if (lua_getfield(L, index, "labels") != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  lua_Integer n = luaL_len(L, -1);
  w->labels = calloc((size_t)n + 1, sizeof *w->labels);
  for (lua_Integer i = 1; w->labels != NULL && i <= n; i++) {
    lua_geti(L, -1, i);
    size_t len = 0;
    const char *s = lua_tolstring(L, -1, &len);
    if (s != NULL && strlen(s) != len) {
      work_free(w);
      luaL_error(L, "a label contains a NUL byte");
    }
    w->labels[i - 1] = strdup(s ? s : "");
    lua_pop(L, 1);
    if (w->labels[i - 1] == NULL) break;
  }
  lua_pop(L, 1);
  if (w->labels == NULL || (n > 0 && w->labels[n - 1] == NULL)) {
    work_free(w);
    luaL_error(L, "not enough memory");
  }
}

static int queue(lua_State *L, snap_work *w) {
  return sl_async_work(L, w, work_run, work_push, work_free);
}

/* core.sandbox_snapshot(id, {name=, tag=, labels={"k=v"...}, files_only=,
 * wait_ms=}): the options are checked for type by the Lua layer. */
static int l_snapshot(lua_State *L) {
  sl_check_cstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  snap_work *w = work_new(L, OP_SNAPSHOT, "sandbox:snapshot");
  copy_arg(L, w, 1, "sandbox id", &w->id);
  copy_field(L, w, 2, "name", &w->name);
  copy_field(L, w, 2, "tag", &w->tag);
  copy_labels(L, w, 2);
  lua_getfield(L, 2, "files_only");
  w->files_only = lua_toboolean(L, -1);
  lua_getfield(L, 2, "wait_ms");
  w->wait_ms = (int)lua_tointeger(L, -1);
  lua_pop(L, 2);
  return queue(L, w);
}

/* core.sandbox_pause(id, files_only, wait_ms) */
static int l_pause(lua_State *L) {
  sl_check_cstring(L, 1);
  snap_work *w = work_new(L, OP_PAUSE, "sandbox:pause");
  copy_arg(L, w, 1, "sandbox id", &w->id);
  w->files_only = lua_toboolean(L, 2);
  w->wait_ms = (int)luaL_optinteger(L, 3, 0);
  return queue(L, w);
}

static int id_op(lua_State *L, snap_op op, const char *fname) {
  sl_check_cstring(L, 1);
  snap_work *w = work_new(L, op, fname);
  copy_arg(L, w, 1, "sandbox id", &w->id);
  return queue(L, w);
}

static int l_resume(lua_State *L) { return id_op(L, OP_RESUME, "sandbox:resume"); }
static int l_connect(lua_State *L) { return id_op(L, OP_CONNECT, "Sandbox.connect"); }

/* core.sandbox_rollback(id, snapshot reference) */
static int l_rollback(lua_State *L) {
  sl_check_cstring(L, 1);
  sl_check_cstring(L, 2);
  snap_work *w = work_new(L, OP_ROLLBACK, "sandbox:rollback");
  copy_arg(L, w, 1, "sandbox id", &w->id);
  copy_arg(L, w, 2, "snapshot reference", &w->ref);
  return queue(L, w);
}

static int ref_op(lua_State *L, snap_op op, const char *fname) {
  sl_check_cstring(L, 1);
  snap_work *w = work_new(L, op, fname);
  copy_arg(L, w, 1, "snapshot reference", &w->ref);
  return queue(L, w);
}

static int l_get(lua_State *L) { return ref_op(L, OP_GET, "sandlot.snapshots.get"); }
static int l_delete(lua_State *L) { return ref_op(L, OP_DELETE, "sandlot.snapshots.delete"); }

/* core.snapshot_list({ref=, sandbox=, label=, limit=, cursor=}) */
static int l_list(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  snap_work *w = work_new(L, OP_LIST, "sandlot.snapshots.list");
  copy_field(L, w, 1, "ref", &w->ref);
  copy_field(L, w, 1, "sandbox", &w->id);
  copy_field(L, w, 1, "label", &w->label);
  copy_field(L, w, 1, "cursor", &w->cursor);
  lua_getfield(L, 1, "limit");
  w->limit = lua_isnil(L, -1) ? SL_LIST_DEFAULT_LIMIT : (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return queue(L, w);
}

void sl_open_snapshot(lua_State *L) {
  static const luaL_Reg functions[] = {
      {"sandbox_snapshot", l_snapshot},
      {"sandbox_pause", l_pause},
      {"sandbox_resume", l_resume},
      {"sandbox_connect", l_connect},
      {"sandbox_rollback", l_rollback},
      {"snapshot_get", l_get},
      {"snapshot_list", l_list},
      {"snapshot_delete", l_delete},
      {NULL, NULL},
  };
  luaL_setfuncs(L, functions, 0);
}
