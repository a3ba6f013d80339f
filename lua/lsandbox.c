/* sandlot.core bindings of the sandbox API (core/sandbox.h): create,
 * create_many, get, list, kill, remove, freeze, thaw, set_timeout and
 * gc, each run on the uv
 * threadpool while the calling task is suspended.
 *
 * One core handle serves the whole host process. It is opened on first
 * use, on a pool thread, at the store that core.set_home() chose or else
 * at $SANDLOT_HOME or the default root (core/store.h). Template build
 * output, which the core reports from pool threads, is passed line by
 * line to the Lua function given to core.on_template_progress(). */
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "async.h"
#include "host.h"
#include "lcore.h"
#include "lsandbox.h"
#include "log.h"
#include "proc_cgroup.h"
#include "sandbox.h"
#include "store.h"

static struct {
  pthread_mutex_t lock; /* handle and home */
  sl_sandboxes *handle;
  char home[PATH_MAX];  /* "" until chosen */
  lua_State *main;
  int progress_ref;     /* Lua function called with each line */
  uv_async_t progress_async;
  pthread_mutex_t progress_lock;
  char *progress_queue; /* lines from pool threads, each ending in \n */
  size_t progress_length;
} S = {PTHREAD_MUTEX_INITIALIZER, NULL, "", NULL, LUA_NOREF, {0}, PTHREAD_MUTEX_INITIALIZER, NULL, 0};

/* ---- Template progress ---- */

/* Pool thread: queue the line and wake the loop. */
void sl_lua_progress_line(const char *line, void *data) {
  (void)data;
  size_t length = strlen(line);
  pthread_mutex_lock(&S.progress_lock);
  char *grown = realloc(S.progress_queue, S.progress_length + length + 1);
  if (grown != NULL) {
    S.progress_queue = grown;
    memcpy(grown + S.progress_length, line, length);
    grown[S.progress_length + length] = '\n';
    S.progress_length += length + 1;
  }
  pthread_mutex_unlock(&S.progress_lock);
  uv_async_send(&S.progress_async);
}

static int traceback(lua_State *L) {
  luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
  return 1;
}

static void deliver_progress(const char *line, size_t length) {
  lua_State *L = S.main;
  if (L == NULL || S.progress_ref == LUA_NOREF) {
    char text[1200];
    int n = snprintf(text, sizeof text, "sandlot: template: %.*s\n", (int)length, line);
    sl_host_write(stderr, text, n < (int)sizeof text ? (size_t)n : sizeof text - 1);
    return;
  }
  lua_pushcfunction(L, traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, S.progress_ref);
  lua_pushlstring(L, line, length);
  if (lua_pcall(L, 1, 0, -3) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    char text[2048];
    int n = snprintf(text, sizeof text, "sandlot: template progress handler failed: %s\n",
                     msg ? msg : "(error object is not a string)");
    sl_host_write(stderr, text, n < (int)sizeof text ? (size_t)n : sizeof text - 1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static void progress_async_cb(uv_async_t *handle) {
  (void)handle;
  pthread_mutex_lock(&S.progress_lock);
  char *text = S.progress_queue;
  size_t length = S.progress_length;
  S.progress_queue = NULL;
  S.progress_length = 0;
  pthread_mutex_unlock(&S.progress_lock);
  for (size_t start = 0; start < length;) {
    char *end = memchr(text + start, '\n', length - start);
    deliver_progress(text + start, (size_t)(end - (text + start)));
    start = (size_t)(end - text) + 1;
  }
  free(text);
}

/* core.on_template_progress(fn): fn(line) runs on the loop, outside any
 * task, for each line of template build output; nil restores printing
 * the lines to stderr. */
static int l_on_template_progress(lua_State *L) {
  if (!lua_isnil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_unref(L, LUA_REGISTRYINDEX, S.progress_ref);
  S.progress_ref = LUA_NOREF;
  if (!lua_isnil(L, 1)) {
    lua_pushvalue(L, 1);
    S.progress_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return 0;
}

/* ---- The core handle ---- */

/* Pool thread: the handle, opened on first use. Without `create`, a
 * store that does not exist yet is left alone: `*out` is then NULL. */
int sl_lua_sandboxes(sl_sandboxes **out, bool create, sl_error *err) {
  int rc = 0;
  pthread_mutex_lock(&S.lock);
  if (S.handle == NULL) {
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%s", S.home);
    if (root[0] == '\0') rc = sl_store_resolve_root(root, sizeof root, err);
    int exists = rc == 0 && !create ? sl_store_exists(root, err) : 1;
    if (exists < 0) rc = exists;
    if (rc == 0 && exists) rc = sl_sandboxes_open(root, &S.handle, err);
    if (rc == 0 && exists) {
      snprintf(S.home, sizeof S.home, "%s", root);
      sl_sandboxes_set_progress(S.handle, sl_lua_progress_line, NULL);
    }
  }
  *out = S.handle;
  pthread_mutex_unlock(&S.lock);
  return rc;
}

/* core.set_home(path): use the store at `path` in this process. Fails
 * with EINVAL for a relative path; raises once sandboxes were used at
 * another store. */
static int l_set_home(lua_State *L) {
  const char *path = sl_check_cstring(L, 1);
  char quoted[SL_SUBJECT_MAX];
  if (path[0] != '/')
    return sl_push_fail(L, EINVAL, "store path must be absolute: %s",
                        sl_subject(quoted, sizeof quoted, path));
  if (strlen(path) >= sizeof S.home) return sl_push_fail(L, ENAMETOOLONG, "store path too long");
  pthread_mutex_lock(&S.lock);
  int busy = S.handle != NULL && strcmp(S.home, path) != 0;
  if (!busy) snprintf(S.home, sizeof S.home, "%s", path);
  pthread_mutex_unlock(&S.lock);
  if (busy)
    return luaL_error(L, "sandlot.set_home: the store at %s is in use; set the home before the "
                         "first sandbox call", S.home);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.home(): the store root in use, or the one the first call will use. */
static int l_home(lua_State *L) {
  char root[PATH_MAX];
  pthread_mutex_lock(&S.lock);
  snprintf(root, sizeof root, "%s", S.home);
  pthread_mutex_unlock(&S.lock);
  sl_error err = {0};
  if (root[0] == '\0' && sl_store_resolve_root(root, sizeof root, &err) < 0)
    return sl_push_error(L, &err);
  lua_pushstring(L, root);
  return 1;
}

/* ---- Pool work ---- */

typedef enum {
  OP_CREATE,
  OP_CREATE_MANY,
  OP_GET,
  OP_LIST,
  OP_KILL,
  OP_REMOVE,
  OP_FREEZE,
  OP_THAW,
  OP_SET_TIMEOUT,
  OP_GC,
} sb_op;

typedef struct {
  sb_op op;
  char *id;
  int64_t seconds;
  sl_create_spec spec;
  char *strings[8];      /* owned copies behind the spec's strings */
  char **env, **labels;  /* owned NULL-terminated lists */
  sl_sandbox_info info;
  sl_sandbox_info *list;
  size_t count;
  sl_gc_counts cleaned;  /* OP_GC: what the core's gc cleaned */
  int removed;           /* OP_GC: records of ended sandboxes removed */
  int rc;
  int pushed;
  sl_error err;
} sb_work;

void sl_lua_store_root(char *buf, size_t len) {
  pthread_mutex_lock(&S.lock);
  snprintf(buf, len, "%s", S.home);
  pthread_mutex_unlock(&S.lock);
  if (buf[0] == '\0' && sl_store_resolve_root(buf, len, NULL) < 0) snprintf(buf, len, "(none)");
}

/* Pool thread: the result of a read-only call when no store exists:
 * no sandboxes, so nothing to list or collect and no id to find. */
static void run_without_store(sb_work *w) {
  char root[PATH_MAX], quoted[SL_SUBJECT_MAX];
  if (w->op == OP_LIST || w->op == OP_GC) return;
  sl_lua_store_root(root, sizeof root);
  w->rc = sl_error_set(&w->err, ENOENT, "sandbox not found (no store at %s): %s", root,
                       sl_subject(quoted, sizeof quoted, w->id));
}

static void work_run(void *data) {
  sb_work *w = data;
  sl_sandboxes *h;
  w->rc = sl_lua_sandboxes(&h, w->op == OP_CREATE || w->op == OP_CREATE_MANY, &w->err);
  if (w->rc < 0) return;
  if (h == NULL) {
    run_without_store(w);
    return;
  }
  switch (w->op) {
  case OP_CREATE: w->rc = sl_sandbox_create(h, &w->spec, &w->info, &w->err); break;
  case OP_CREATE_MANY:
    w->list = calloc(w->count, sizeof *w->list);
    w->rc = w->list ? sl_sandbox_create_many(h, &w->spec, w->count, w->list, &w->err)
                    : sl_error_set(&w->err, ENOMEM, "out of memory");
    break;
  case OP_GET: w->rc = sl_sandbox_get(h, w->id, &w->info, &w->err); break;
  case OP_LIST: w->rc = sl_sandbox_list(h, &w->list, &w->count, &w->err); break;
  case OP_KILL: w->rc = sl_sandbox_kill(h, w->id, &w->err); break;
  case OP_REMOVE: w->rc = sl_sandbox_remove(h, w->id, &w->err); break;
  case OP_FREEZE: w->rc = sl_sandbox_freeze(h, w->id, &w->err); break;
  case OP_THAW: w->rc = sl_sandbox_thaw(h, w->id, &w->err); break;
  case OP_SET_TIMEOUT: w->rc = sl_sandbox_set_timeout(h, w->id, w->seconds, &w->err); break;
  case OP_GC:
    w->rc = sl_sandbox_gc(h, &w->cleaned, &w->err);
    if (w->rc == 0 && w->seconds >= 0)
      w->rc = sl_sandbox_remove_ended(h, w->seconds * 1000, &w->removed, &w->err);
    break;
  }
}

static void push_lines_as_map(lua_State *L, const char *lines) {
  lua_newtable(L);
  const char *p = lines;
  while (*p != '\0') {
    const char *end = strchr(p, '\n');
    size_t length = end ? (size_t)(end - p) : strlen(p);
    const char *eq = memchr(p, '=', length);
    if (eq != NULL) {
      lua_pushlstring(L, p, (size_t)(eq - p));
      lua_pushlstring(L, eq + 1, length - (size_t)(eq - p) - 1);
      lua_rawset(L, -3);
    }
    p += length + (end ? 1 : 0);
  }
}

static void set_string(lua_State *L, const char *key, const char *value) {
  lua_pushstring(L, value);
  lua_setfield(L, -2, key);
}

static void set_integer(lua_State *L, const char *key, lua_Integer value) {
  lua_pushinteger(L, value);
  lua_setfield(L, -2, key);
}

static void set_seconds(lua_State *L, const char *key, int64_t ms) {
  if (ms == 0) return;
  lua_pushnumber(L, (double)ms / 1000.0);
  lua_setfield(L, -2, key);
}

/* Push a sandbox record as a table (times in seconds since the epoch,
 * sizes in bytes). */
void sl_lua_push_sandbox(lua_State *L, const sl_sandbox_info *info) {
  lua_createtable(L, 0, 24);
  set_string(L, "id", info->id);
  set_string(L, "backend", sl_backend_name(info->backend));
  set_string(L, "template", info->template_name);
  set_string(L, "base_layer", info->base_layer_id);
  if (info->source_snapshot_id[0] != '\0') set_string(L, "source_snapshot", info->source_snapshot_id);
  set_string(L, "state", sl_sandbox_state_name(info->state));
  set_seconds(L, "created_at", info->created_at_ms);
  set_seconds(L, "ended_at", info->ended_at_ms);
  set_seconds(L, "timeout", info->timeout_ms);
  set_seconds(L, "deadline", info->deadline_ms);
  set_string(L, "on_timeout", sl_on_timeout_name(info->on_timeout));
  set_integer(L, "memory", (lua_Integer)info->memory_bytes);
  set_integer(L, "pids", info->pids_max);
  set_integer(L, "cpu_shares", info->cpu_shares);
  lua_pushnumber(L, info->cpus);
  lua_setfield(L, -2, "cpus");
  lua_pushboolean(L, info->auto_kill);
  lua_setfield(L, -2, "auto_kill");
  push_lines_as_map(L, info->labels);
  lua_setfield(L, -2, "labels");
  push_lines_as_map(L, info->cgroups);
  lua_setfield(L, -2, "cgroups");
  set_integer(L, "init_pid", info->init_pid);
  set_integer(L, "monitor_pid", info->monitor_pid);
  set_string(L, "agent_socket", info->agent_socket);
  set_string(L, "root", info->root);
  if (info->exit_status >= 0) set_integer(L, "exit_status", info->exit_status);
  if (info->exit_signal > 0) set_integer(L, "exit_signal", info->exit_signal);
  if (info->end_reason[0] != '\0') set_string(L, "end_reason", info->end_reason);
}

static int work_push(lua_State *T, void *data) {
  sb_work *w = data;
  w->pushed = 1;
  if (w->rc < 0) return sl_push_error(T, &w->err);
  switch (w->op) {
  case OP_CREATE:
  case OP_GET:
    sl_lua_push_sandbox(T, &w->info);
    return 1;
  case OP_LIST:
  case OP_CREATE_MANY:
    lua_createtable(T, (int)w->count, 0);
    for (size_t i = 0; i < w->count; i++) {
      sl_lua_push_sandbox(T, &w->list[i]);
      lua_rawseti(T, -2, (lua_Integer)i + 1);
    }
    return 1;
  case OP_GC:
    lua_createtable(T, 0, 5);
    set_integer(T, "sandboxes", w->cleaned.sandboxes);
    set_integer(T, "mounts", w->cleaned.mounts);
    set_integer(T, "snapshots", w->cleaned.snapshots);
    set_integer(T, "layers", w->cleaned.layers);
    set_integer(T, "records", w->removed);
    return 1;
  default:
    lua_pushboolean(T, 1);
    return 1;
  }
}

static void strv_free(char **v) {
  for (char **p = v; p && *p; p++) free(*p);
  free(v);
}

/* A kill that no task waits for: of a sandbox whose create was cancelled
 * while it ran (no task received it, so it must not stay behind), or of
 * a sandbox object closed where it could not suspend. */
typedef struct {
  uv_work_t req;
  char id[SL_SANDBOX_ID_MAX];
} orphan_kill;

static void orphan_kill_run(uv_work_t *req) {
  orphan_kill *k = req->data;
  sl_sandboxes *h;
  sl_error err = {0};
  int rc = sl_lua_sandboxes(&h, true, &err);
  if (rc == 0) rc = sl_sandbox_kill(h, k->id, &err);
  if (rc < 0 && err.code != ESRCH)
    SL_WARN("sandbox.detached_kill_failed", "sandbox=%s error=\"%s\"", k->id, err.msg);
}

static void orphan_kill_done(uv_work_t *req, int status) {
  (void)status;
  free(req->data);
}

static void kill_orphan(const char *id) {
  orphan_kill *k = calloc(1, sizeof *k);
  if (k == NULL) return;
  snprintf(k->id, sizeof k->id, "%s", id);
  k->req.data = k;
  if (uv_queue_work(sl_loop(), &k->req, orphan_kill_run, orphan_kill_done) < 0) free(k);
}

static void work_free(void *data) {
  sb_work *w = data;
  if (w->op == OP_CREATE && w->rc == 0 && !w->pushed && w->info.id[0] != '\0') kill_orphan(w->info.id);
  for (size_t i = 0; w->op == OP_CREATE_MANY && w->rc == 0 && !w->pushed && i < w->count; i++)
    kill_orphan(w->list[i].id);
  free(w->id);
  for (size_t i = 0; i < sizeof w->strings / sizeof w->strings[0]; i++) free(w->strings[i]);
  strv_free(w->env);
  strv_free(w->labels);
  free(w->list);
  free(w);
}

static sb_work *work_new(lua_State *L, sb_op op) {
  sb_work *w = calloc(1, sizeof *w);
  if (w == NULL) luaL_error(L, "not enough memory");
  w->op = op;
  return w;
}

static int queue(lua_State *L, sb_work *w) {
  return sl_async_work(L, w, work_run, work_push, work_free);
}

/* ---- Create ---- */

/* Copy the string field `name` of the spec table at index 1 into the
 * work's strings; NULL when absent. */
static const char *spec_string(lua_State *L, sb_work *w, int slot, const char *name) {
  lua_getfield(L, 1, name);
  const char *value = lua_tostring(L, -1);
  size_t len = value != NULL ? lua_rawlen(L, -1) : 0;
  if (value != NULL && strlen(value) != len) {
    work_free(w);
    luaL_error(L, "Sandbox.create: %s contains a NUL byte", name);
  }
  if (value != NULL && (w->strings[slot] = strdup(value)) == NULL) {
    work_free(w);
    luaL_error(L, "not enough memory");
  }
  lua_pop(L, 1);
  return w->strings[slot];
}

static char **spec_list(lua_State *L, sb_work *w, const char *name) {
  if (lua_getfield(L, 1, name) != LUA_TTABLE) {
    lua_pop(L, 1);
    return NULL;
  }
  lua_Integer n = luaL_len(L, -1);
  char **list = calloc((size_t)n + 1, sizeof *list);
  for (lua_Integer i = 1; list != NULL && i <= n; i++) {
    lua_geti(L, -1, i);
    size_t len = 0;
    const char *s = lua_tolstring(L, -1, &len);
    if (s != NULL && strlen(s) != len) {
      strv_free(list);
      work_free(w);
      luaL_error(L, "Sandbox.create: %s contains a NUL byte", name);
    }
    list[i - 1] = strdup(s ? s : "");
    lua_pop(L, 1);
    if (list[i - 1] == NULL) {
      strv_free(list);
      list = NULL;
    }
  }
  lua_pop(L, 1);
  if (list == NULL) {
    work_free(w);
    luaL_error(L, "not enough memory");
  }
  return list;
}

static lua_Integer spec_integer(lua_State *L, const char *name) {
  lua_getfield(L, 1, name);
  lua_Integer value = lua_tointeger(L, -1);
  lua_pop(L, 1);
  return value;
}

/* core.sandbox_create(spec [, count]): spec fields are checked for type
 * by the Lua layer: backend, template, on_timeout, memory, cwd, hostname,
 * snapshot, on_fork (strings), timeout, pids, cpu_shares (integers),
 * cpus (number), env and labels (lists of "NAME=value"), auto_kill
 * (boolean). With a count, creates that many in parallel
 * (sl_sandbox_create_many) and returns a list of records. */
static int l_create(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer count = luaL_optinteger(L, 2, 0);
  lua_settop(L, 1);
  sl_async_check(L, count > 0 ? "Sandbox.create_many" : "Sandbox.create");
  sb_work *w = work_new(L, count > 0 ? OP_CREATE_MANY : OP_CREATE);
  w->count = count > 0 ? (size_t)count : 0;
  sl_create_spec *spec = &w->spec;
  const char *backend = spec_string(L, w, 0, "backend");
  const char *on_timeout = spec_string(L, w, 1, "on_timeout");
  spec->template_name = spec_string(L, w, 2, "template");
  spec->memory = spec_string(L, w, 3, "memory");
  spec->cwd = spec_string(L, w, 4, "cwd");
  spec->hostname = spec_string(L, w, 5, "hostname");
  spec->snapshot = spec_string(L, w, 6, "snapshot");
  spec->on_fork = spec_string(L, w, 7, "on_fork");
  w->env = spec_list(L, w, "env");
  w->labels = spec_list(L, w, "labels");
  spec->env = (const char *const *)w->env;
  spec->labels = (const char *const *)w->labels;
  spec->timeout_sec = spec_integer(L, "timeout");
  spec->pids = spec_integer(L, "pids");
  spec->cpu_shares = spec_integer(L, "cpu_shares");
  lua_getfield(L, 1, "cpus");
  spec->cpus = lua_tonumber(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 1, "auto_kill");
  spec->auto_kill = lua_toboolean(L, -1);
  lua_pop(L, 1);

  sl_error err = {0};
  int rc = 0;
  if (backend != NULL) rc = sl_backend_parse(backend, &spec->backend, &err);
  if (rc == 0 && on_timeout != NULL) rc = sl_on_timeout_parse(on_timeout, &spec->on_timeout, &err);
  /* Check here too, so that a bad value fails without a trip to the pool. */
  if (rc == 0) rc = sl_sandbox_spec_check(spec, &err);
  if (rc == 0 && count > 64)
    rc = sl_error_set(&err, EINVAL, "invalid count: %lld (expected 1 to 64)", (long long)count);
  if (rc < 0) {
    work_free(w);
    sl_error_wrap(&err, "create sandbox");
    return sl_push_error(L, &err);
  }
  return queue(L, w);
}

/* ---- Other calls ---- */

static int queue_id_op(lua_State *L, sb_op op, const char *fname) {
  const char *id = sl_check_cstring(L, 1);
  sl_async_check(L, fname);
  sb_work *w = work_new(L, op);
  w->id = strdup(id);
  if (w->id == NULL) {
    work_free(w);
    return luaL_error(L, "not enough memory");
  }
  return queue(L, w);
}

static int l_get(lua_State *L) { return queue_id_op(L, OP_GET, "Sandbox.get"); }
static int l_kill(lua_State *L) { return queue_id_op(L, OP_KILL, "sandbox:kill"); }
static int l_remove(lua_State *L) { return queue_id_op(L, OP_REMOVE, "sandbox:delete"); }
static int l_freeze(lua_State *L) { return queue_id_op(L, OP_FREEZE, "sandbox:freeze"); }
static int l_thaw(lua_State *L) { return queue_id_op(L, OP_THAW, "sandbox:thaw"); }

static int l_set_timeout(lua_State *L) {
  lua_Integer seconds = luaL_checkinteger(L, 2);
  if (seconds < 0 || seconds > SL_TIMEOUT_MAX_SEC)
    return sl_push_fail(L, EINVAL, "invalid timeout: %lld (expected whole seconds from 0 to %lld)",
                        (long long)seconds, SL_TIMEOUT_MAX_SEC);
  lua_settop(L, 1);
  sl_async_check(L, "sandbox:set_timeout");
  sb_work *w = work_new(L, OP_SET_TIMEOUT);
  w->seconds = seconds;
  w->id = strdup(sl_check_cstring(L, 1));
  if (w->id == NULL) {
    work_free(w);
    return luaL_error(L, "not enough memory");
  }
  return queue(L, w);
}

static int l_list(lua_State *L) {
  sl_async_check(L, "Sandbox.list");
  return queue(L, work_new(L, OP_LIST));
}

/* core.sandbox_gc([keep_seconds]): gc, then with `keep_seconds` remove
 * the records of sandboxes that ended at least that long ago. Returns a
 * table of counts: sandboxes, mounts, snapshots and layers cleaned (as
 * in sl_gc_counts) and records removed. */
static int l_gc(lua_State *L) {
  lua_Integer keep = luaL_optinteger(L, 1, -1);
  sl_async_check(L, "sandlot.gc");
  sb_work *w = work_new(L, OP_GC);
  w->seconds = keep < 0 ? -1 : keep;
  return queue(L, w);
}

/* core.sandbox_kill_detached(id): kill the sandbox on the pool without
 * waiting, for a sandbox object closed where its task cannot suspend
 * (the __close of a failed task). Failures are logged. */
static int l_kill_detached(lua_State *L) {
  kill_orphan(sl_check_cstring(L, 1));
  return 0;
}

/* core.async_check(name): raise the error of a suspending function
 * called where it cannot suspend; lets Lua wrappers check at entry. */
static int l_async_check(lua_State *L) {
  sl_async_check(L, luaL_checkstring(L, 1));
  return 0;
}

/* core.cgroups_frozen(cgroups): whether the freezer of a process sandbox
 * (the record's `cgroups`, controller -> folder) is frozen or freezing.
 * A read of one cgroup file on the loop thread, cheap enough to run
 * before every agent request. */
static int l_cgroups_frozen(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  char text[SL_SANDBOX_PATH_MAX];
  size_t used = 0;
  text[0] = '\0';
  lua_pushnil(L);
  while (lua_next(L, 1) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING && used < sizeof text) {
      int n = snprintf(text + used, sizeof text - used, "%s=%s\n", lua_tostring(L, -2),
                       lua_tostring(L, -1));
      used = n < 0 ? sizeof text : used + (size_t)n;
    }
    lua_pop(L, 1);
  }
  sl_cgroup cgroup;
  int frozen = used > 0 && used < sizeof text && sl_cgroup_parse(text, &cgroup, NULL) == 0 &&
               sl_cgroup_is_frozen(&cgroup);
  lua_pushboolean(L, frozen);
  return 1;
}

/* core.can_suspend(): whether the running code may call a suspending
 * function (sl_async_can_suspend). */
static int l_can_suspend(lua_State *L) {
  lua_pushboolean(L, sl_async_can_suspend(L));
  return 1;
}

/* core.raise(message): raise `message` at the first caller outside
 * sandlot's Lua modules (sl_raise), for argument errors of the public API
 * whatever the depth of the module's call chain. */
static int l_raise(lua_State *L) {
  return sl_raise(L, "%s", luaL_checkstring(L, 1));
}

/* ---- Setup and shutdown ---- */

/* Runs when the Lua state closes; by then no pool work is left. Lines
 * still queued go to stderr. */
static int l_close_store(lua_State *L) {
  luaL_unref(L, LUA_REGISTRYINDEX, S.progress_ref);
  S.progress_ref = LUA_NOREF;
  S.main = NULL;
  progress_async_cb(&S.progress_async);
  uv_close((uv_handle_t *)&S.progress_async, NULL);
  pthread_mutex_lock(&S.lock);
  sl_sandboxes_close(S.handle);
  S.handle = NULL;
  pthread_mutex_unlock(&S.lock);
  pthread_mutex_lock(&S.progress_lock);
  free(S.progress_queue);
  S.progress_queue = NULL;
  S.progress_length = 0;
  pthread_mutex_unlock(&S.progress_lock);
  return 0;
}

void sl_open_sandbox(lua_State *L) {
  static const luaL_Reg functions[] = {
      {"sandbox_create", l_create},
      {"sandbox_get", l_get},
      {"sandbox_list", l_list},
      {"sandbox_kill", l_kill},
      {"sandbox_remove", l_remove},
      {"sandbox_freeze", l_freeze},
      {"sandbox_thaw", l_thaw},
      {"sandbox_set_timeout", l_set_timeout},
      {"sandbox_gc", l_gc},
      {"sandbox_kill_detached", l_kill_detached},
      {"set_home", l_set_home},
      {"home", l_home},
      {"on_template_progress", l_on_template_progress},
      {"async_check", l_async_check},
      {"raise", l_raise},
      {"can_suspend", l_can_suspend},
      {"cgroups_frozen", l_cgroups_frozen},
      {NULL, NULL},
  };
  luaL_setfuncs(L, functions, 0);
  lua_pushinteger(L, SL_TIMEOUT_MAX_SEC);
  lua_setfield(L, -2, "timeout_max");
  lua_pushinteger(L, SL_PIDS_MAX);
  lua_setfield(L, -2, "pids_max");
  lua_pushinteger(L, SL_CPU_SHARES_MAX);
  lua_setfield(L, -2, "cpu_shares_max");

  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  S.main = lua_tothread(L, -1);
  lua_pop(L, 1);
  S.progress_ref = LUA_NOREF;
  uv_async_init(sl_loop(), &S.progress_async, progress_async_cb);
  uv_unref((uv_handle_t *)&S.progress_async);

  lua_newuserdatauv(L, 0, 0);
  lua_newtable(L);
  lua_pushcfunction(L, l_close_store);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "sandlot.sandbox.sentinel");
}
