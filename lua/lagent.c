/* Agent connections (metatable "sandlot.agent"): the libuv agent client
 * of core/agent_client.h for one agent socket, as suspending Lua calls.
 *
 *   core.agent_open(path, sync)  -> agent
 *   agent:connect()              -> true
 *   agent:call(request, fields)  -> reply fields, with `events` when the
 *                                   agent sent events before the reply
 *   agent:read_file(path)        -> bytes
 *   agent:write_file(path, data, mode, flags) -> true
 *   agent:start(spec, mode)      -> process handle (lprocess.c)
 *   agent:attach(proc, pid, stdout_offset, stderr_offset, name) -> handle
 *   agent:pause(), agent:resume(), agent:close(), agent:shutdown(name, msg)
 *
 * Failures return `nil, "ENAME: message", "ENAME"`. When the connection
 * failed rather than the agent (lost, refused, timed out), a fourth value
 * "connection" follows, so the Lua layer can check whether the sandbox
 * ended. */
#include <errno.h>
#include <lauxlib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "async.h"
#include "lagent.h"
#include "lcore.h"

typedef struct {
  lagent *a;
} agent_ud;

/* Every open lagent, so that the host can close their clients when the
 * Lua state closes, before the loop does. */
typedef struct agent_node {
  lagent *a;
  struct agent_node *next;
} agent_node;
static agent_node *open_agents;

/* ---- Lifetime ---- */

void lagent_retain(lagent *a) { a->refs++; }

/* Pending requests fail with the reason agent:shutdown() gave, if any,
 * else with ECANCELED; their callbacks run now. */
static void close_client(lagent *a) {
  if (a->client == NULL) return;
  sl_agent *client = a->client;
  a->client = NULL;
  sl_agent_close_with(client, a->ended.code != 0 ? &a->ended : NULL);
}

void lagent_release(lagent *a) {
  if (--a->refs > 0) return;
  a->refs++; /* closing runs callbacks that retain and release */
  close_client(a);
  a->refs--;
  for (agent_node **pp = &open_agents; *pp != NULL; pp = &(*pp)->next)
    if ((*pp)->a == a) {
      agent_node *node = *pp;
      *pp = node->next;
      free(node);
      break;
    }
  free(a->path);
  free(a);
}

lagent *lagent_check(lua_State *L, int index) {
  agent_ud *ud = luaL_checkudata(L, index, SL_AGENT_MT);
  if (ud->a == NULL || ud->a->client == NULL) luaL_error(L, "attempt to use a closed agent connection");
  return ud->a;
}

static void release_ud(agent_ud *ud) {
  lagent *a = ud->a;
  if (a == NULL) return;
  ud->a = NULL;
  lagent_release(a);
}

static int is_connection_code(int code) {
  return code == ECONNRESET || code == ECONNREFUSED || code == ETIMEDOUT || code == EPIPE ||
         code == ECANCELED;
}

/* The fail tuple; with a fourth value "connection" when `connection`. */
static int push_failure(lua_State *T, const sl_error *err, int connection) {
  sl_push_error(T, err);
  if (!connection) return 3;
  lua_pushliteral(T, "connection");
  return 4;
}

/* core.agent_open(path, vm): a connection to the agent socket at `path`,
 * made on first use. With `vm`, `path` is a VM sandbox's agent.sock: the
 * client connects through a free one of the VM's agent ports, holding
 * the port's lock while it uses it, with a sync marker at the start of
 * each connection (agent_ports.h). */
static int l_agent_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  sl_agent_options options = {0};
  options.vm_ports = lua_toboolean(L, 2);
  agent_ud *ud = lua_newuserdatauv(L, sizeof *ud, 0);
  ud->a = NULL;
  luaL_setmetatable(L, SL_AGENT_MT);
  lagent *a = calloc(1, sizeof *a);
  agent_node *node = calloc(1, sizeof *node);
  char *copy = strdup(path);
  sl_agent *client = sl_agent_new(sl_loop(), path, &options);
  if (a == NULL || node == NULL || copy == NULL || client == NULL) {
    if (client != NULL) sl_agent_close(client);
    free(a), free(node), free(copy);
    return luaL_error(L, "not enough memory");
  }
  *a = (lagent){.client = client, .refs = 1, .path = copy};
  node->a = a;
  node->next = open_agents;
  open_agents = node;
  ud->a = a;
  return 1;
}

/* ---- connect ---- */

static void connect_done(sl_agent *client, const sl_error *err, void *data) {
  (void)client;
  sl_waiter *w = data;
  lua_State *T = sl_waiter_thread(w);
  int n = 0;
  if (T != NULL && err != NULL) n = push_failure(T, err, 1);
  if (T != NULL && err == NULL) lua_pushboolean(T, 1), n = 1;
  sl_waiter_resume(w, n);
}

static int l_connect(lua_State *L) {
  lagent *a = lagent_check(L, 1);
  sl_async_check(L, "agent:connect");
  sl_waiter *w = sl_waiter_new(L, NULL, NULL);
  sl_agent_connect(a->client, connect_done, w);
  return sl_waiter_suspend(L, w);
}

/* ---- call: any request with a single final reply ---- */

typedef struct {
  const char *name;
  uint8_t key;
  char kind; /* 'i' i64, 's' bytes, 'l' repeated bytes */
} field_info;

static const field_info fields[] = {
    {"version", SL_F_VERSION, 'i'},
    {"agent_version", SL_F_AGENT_VERSION, 's'},
    {"pid", SL_F_PID, 'i'},
    {"uptime_ms", SL_F_UPTIME_MS, 'i'},
    {"code", SL_F_CODE, 's'},
    {"message", SL_F_MESSAGE, 's'},
    {"proc", SL_F_PROC, 'i'},
    {"argv", SL_F_ARGV, 'l'},
    {"command", SL_F_COMMAND, 's'},
    {"env", SL_F_ENV, 'l'},
    {"cwd", SL_F_CWD, 's'},
    {"stdin", SL_F_STDIN, 's'},
    {"stdin_open", SL_F_STDIN_OPEN, 'i'},
    {"timeout_ms", SL_F_TIMEOUT_MS, 'i'},
    {"stream", SL_F_STREAM, 'i'},
    {"buffer_size", SL_F_BUFFER_SIZE, 'i'},
    {"fd", SL_F_FD, 'i'},
    {"offset", SL_F_OFFSET, 'i'},
    {"data", SL_F_DATA, 's'},
    {"length", SL_F_LENGTH, 'i'},
    {"eof", SL_F_EOF, 'i'},
    {"exit_code", SL_F_EXIT_CODE, 'i'},
    {"signal", SL_F_SIGNAL, 'i'},
    {"timed_out", SL_F_TIMED_OUT, 'i'},
    {"state", SL_F_STATE, 's'},
    {"start_time_ms", SL_F_START_TIME_MS, 'i'},
    {"stdout_offset", SL_F_STDOUT_OFFSET, 'i'},
    {"stderr_offset", SL_F_STDERR_OFFSET, 'i'},
    {"path", SL_F_PATH, 's'},
    {"new_path", SL_F_NEW_PATH, 's'},
    {"mode", SL_F_MODE, 'i'},
    {"flags", SL_F_FLAGS, 'i'},
    {"name", SL_F_NAME, 's'},
    {"type", SL_F_TYPE, 's'},
    {"size", SL_F_SIZE, 'i'},
    {"mtime_ms", SL_F_MTIME_MS, 'i'},
    {"link_target", SL_F_LINK_TARGET, 's'},
    {"credited", SL_F_CREDITED, 'i'},
    {"count", SL_F_COUNT, 'i'},
    {"max_frame", SL_F_MAX_FRAME, 'i'},
    {"stdout_start", SL_F_STDOUT_START, 'i'},
    {"stderr_start", SL_F_STDERR_START, 'i'},
};
#define FIELD_COUNT (sizeof fields / sizeof fields[0])

/* Requests that end with one final reply. exec and attach go through
 * process handles, ack has no reply. */
static const char *const request_names[] = {
    "hello",   "ping",      "quiesce",  "read",      "write_stdin", "close_stdin", "signal",
    "wait",    "list",      "release",  "detach",    "file_read",   "file_write",  "list_dir",
    "stat",    "mkdir",     "remove",   "rename",    "set_hostname", "add_entropy", NULL};
static const uint8_t request_types[] = {
    SL_MSG_HELLO,     SL_MSG_PING,       SL_MSG_QUIESCE,     SL_MSG_READ,
    SL_MSG_WRITE_STDIN, SL_MSG_CLOSE_STDIN, SL_MSG_SIGNAL,    SL_MSG_WAIT,
    SL_MSG_LIST,      SL_MSG_RELEASE,    SL_MSG_DETACH,      SL_MSG_FILE_READ,
    SL_MSG_FILE_WRITE, SL_MSG_LIST_DIR,  SL_MSG_STAT,        SL_MSG_MKDIR,
    SL_MSG_REMOVE,    SL_MSG_RENAME,     SL_MSG_SET_HOSTNAME, SL_MSG_ADD_ENTROPY};

static const field_info *field_by_key(uint8_t key) {
  for (size_t i = 0; i < FIELD_COUNT; i++)
    if (fields[i].key == key) return &fields[i];
  return NULL;
}

/* Append field `f` from the value at `index`; returns NULL or the
 * expected type when the value has another. */
static const char *put_field(lua_State *L, sl_buf *b, const field_info *f, int index) {
  size_t len;
  if (f->kind == 'i') {
    if (lua_type(L, index) == LUA_TBOOLEAN)
      sl_frame_put_i64(b, f->key, lua_toboolean(L, index));
    else if (lua_isinteger(L, index))
      sl_frame_put_i64(b, f->key, (int64_t)lua_tointeger(L, index));
    else
      return "an integer";
    return NULL;
  }
  if (f->kind == 's') {
    if (lua_type(L, index) != LUA_TSTRING) return "a string";
    const char *s = lua_tolstring(L, index, &len);
    sl_frame_put_bytes(b, f->key, s, len);
    return NULL;
  }
  if (lua_type(L, index) != LUA_TTABLE) return "a list of strings";
  lua_Integer n = luaL_len(L, index);
  for (lua_Integer i = 1; i <= n; i++) {
    int is_string = lua_geti(L, index, i) == LUA_TSTRING;
    const char *s = lua_tolstring(L, -1, &len);
    if (is_string) sl_frame_put_bytes(b, f->key, s, len);
    lua_pop(L, 1);
    if (!is_string) return "a list of strings";
  }
  return NULL;
}

/* Build the frame of request `type` from the fields table at `index`;
 * raises (after freeing `b`) when a field has the wrong type. */
static void build_request(lua_State *L, sl_buf *b, uint8_t type, int index) {
  sl_frame_begin(b, type, 0);
  if (lua_isnoneornil(L, index)) return;
  if (!lua_istable(L, index)) {
    sl_buf_free(b);
    luaL_typeerror(L, index, "table");
  }
  for (size_t i = 0; i < FIELD_COUNT; i++) {
    const char *expected = NULL;
    if (lua_getfield(L, index, fields[i].name) != LUA_TNIL)
      expected = put_field(L, b, &fields[i], lua_gettop(L));
    lua_pop(L, 1);
    if (expected != NULL) {
      sl_buf_free(b);
      luaL_error(L, "agent:call: field %s must be %s", fields[i].name, expected);
    }
  }
}

/* Push the fields of `f` as a table: integers, strings, and lists for
 * repeated keys. Fields with unknown keys are skipped. */
static void push_frame_fields(lua_State *T, const sl_frame *f) {
  lua_newtable(T);
  size_t pos = 0;
  sl_field field;
  while (sl_frame_next_field(f, &pos, &field)) {
    const field_info *info = field_by_key(field.key);
    if (info == NULL) continue;
    if (info->kind == 'i' && field.len == 8) {
      int64_t v = 0;
      for (int i = 7; i >= 0; i--) v = (int64_t)((uint64_t)v << 8 | field.data[i]);
      lua_pushinteger(T, (lua_Integer)v);
      lua_setfield(T, -2, info->name);
    } else if (info->kind == 'l') {
      if (lua_getfield(T, -1, info->name) != LUA_TTABLE) {
        lua_pop(T, 1);
        lua_newtable(T);
        lua_pushvalue(T, -1);
        lua_setfield(T, -3, info->name);
      }
      lua_pushlstring(T, (const char *)field.data, field.len);
      lua_rawseti(T, -2, (lua_Integer)luaL_len(T, -2) + 1);
      lua_pop(T, 1);
    } else if (info->kind == 's') {
      lua_pushlstring(T, (const char *)field.data, field.len);
      lua_setfield(T, -2, info->name);
    }
  }
  lua_pushstring(T, sl_msg_name(f->type));
  lua_setfield(T, -2, "reply");
}

typedef struct {
  sl_waiter *waiter;
  sl_buf events; /* each event: u8 type, u32 body length, body */
  size_t nevents;
} call_op;

static void push_events(lua_State *T, const call_op *op) {
  lua_createtable(T, (int)op->nevents, 0);
  size_t pos = 0;
  for (size_t i = 1; i <= op->nevents; i++) {
    uint32_t len;
    memcpy(&len, op->events.data + pos + 1, 4);
    sl_frame f = {.type = op->events.data[pos], .body = op->events.data + pos + 5, .body_len = len};
    push_frame_fields(T, &f);
    lua_rawseti(T, -2, (lua_Integer)i);
    pos += 5 + len;
  }
}

static void call_reply(sl_agent *client, const sl_frame *msg, const sl_error *err, void *data) {
  (void)client;
  call_op *op = data;
  if (msg != NULL && err == NULL && !sl_msg_is_final(msg->type)) {
    uint32_t len = (uint32_t)msg->body_len;
    sl_buf_append(&op->events, &msg->type, 1);
    sl_buf_append(&op->events, &len, 4);
    sl_buf_append(&op->events, msg->body, msg->body_len);
    op->nevents++;
    return;
  }
  lua_State *T = sl_waiter_thread(op->waiter);
  int n = 0;
  if (T != NULL && err != NULL) {
    n = push_failure(T, err, msg == NULL);
  } else if (T != NULL && op->events.failed) {
    n = sl_push_fail(T, ENOMEM, "out of memory keeping %zu agent events", op->nevents);
  } else if (T != NULL) {
    push_frame_fields(T, msg);
    if (op->nevents > 0) {
      push_events(T, op);
      lua_setfield(T, -2, "events");
    }
    n = 1;
  }
  sl_waiter_resume(op->waiter, n);
  sl_buf_free(&op->events);
  free(op);
}

/* agent:call(request, fields): send one request and return the fields of
 * its final reply. Events before it are in the reply's `events` list. */
static int l_call(lua_State *L) {
  lagent *a = lagent_check(L, 1);
  int request = luaL_checkoption(L, 2, NULL, request_names);
  sl_async_check(L, "agent:call");
  sl_buf b = {0};
  build_request(L, &b, request_types[request], 3);
  sl_error err = {0};
  int rc = sl_frame_end(&b, 0, &err);
  call_op *op = rc == 0 ? calloc(1, sizeof *op) : NULL;
  if (rc == 0 && op == NULL) rc = sl_error_set(&err, ENOMEM, "out of memory");
  if (rc == 0) {
    op->waiter = sl_waiter_new(L, NULL, op);
    rc = sl_agent_request(a->client, &b, call_reply, op, &err);
    if (rc < 0) {
      sl_waiter_free(op->waiter);
      free(op);
    }
  }
  sl_buf_free(&b);
  if (rc < 0) return push_failure(L, &err, 0);
  return sl_waiter_suspend(L, op->waiter);
}

/* ---- Whole files ---- */

static void file_done(sl_agent *client, const uint8_t *bytes, size_t len, const sl_error *err,
                      void *data) {
  (void)client;
  sl_waiter *w = data;
  lua_State *T = sl_waiter_thread(w);
  int n = 0;
  if (T != NULL && err != NULL) {
    n = push_failure(T, err, is_connection_code(err->code));
  } else if (T != NULL && bytes != NULL) {
    lua_pushlstring(T, (const char *)bytes, len);
    n = 1;
  } else if (T != NULL) {
    lua_pushboolean(T, 1);
    n = 1;
  }
  sl_waiter_resume(w, n);
}

/* agent:read_file(path, [max]): the bytes of the file; EFBIG when it
 * has more than `max` bytes (absent or 0: any size). */
static int l_read_file(lua_State *L) {
  lagent *a = lagent_check(L, 1);
  const char *path = sl_check_cstring(L, 2);
  lua_Integer max = luaL_optinteger(L, 3, 0);
  sl_async_check(L, "sandbox:read_file");
  sl_waiter *w = sl_waiter_new(L, NULL, NULL);
  sl_error err = {0};
  if (sl_agent_read_file_max(a->client, path, max > 0 ? (uint64_t)max : 0, file_done, w, &err) < 0) {
    sl_waiter_free(w);
    return push_failure(L, &err, 0);
  }
  return sl_waiter_suspend(L, w);
}

static int l_write_file(lua_State *L) {
  lagent *a = lagent_check(L, 1);
  const char *path = sl_check_cstring(L, 2);
  size_t len;
  const char *data = luaL_checklstring(L, 3, &len);
  lua_Integer mode = luaL_optinteger(L, 4, 0644);
  lua_Integer flags = luaL_optinteger(L, 5, 0);
  sl_async_check(L, "sandbox:write_file");
  sl_waiter *w = sl_waiter_new(L, NULL, NULL);
  sl_error err = {0};
  if (sl_agent_write_file(a->client, path, data, len, (int)mode, (int)flags, file_done, w, &err) <
      0) {
    sl_waiter_free(w);
    return push_failure(L, &err, 0);
  }
  return sl_waiter_suspend(L, w);
}

/* ---- Processes ---- */

/* Make a NULL-terminated array of pointers to the strings listed in
 * field `name` of the table at `index`, valid while that table is. The
 * array stays on the stack. Returns NULL when the field is absent. */
static const char **string_list(lua_State *L, int index, const char *name) {
  if (lua_getfield(L, index, name) == LUA_TNIL) {
    lua_pop(L, 1);
    return NULL;
  }
  luaL_checktype(L, -1, LUA_TTABLE);
  lua_Integer n = luaL_len(L, -1);
  const char **list = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *list, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, -2, i);
    list[i - 1] = sl_to_cstring(L, -1, name);
    if (list[i - 1] == NULL) luaL_error(L, "%s must list strings", name);
    lua_pop(L, 1); /* the string stays in the table */
  }
  list[n] = NULL;
  /* Keep the array alive on the stack below the table. */
  lua_insert(L, -2);
  lua_pop(L, 1);
  return list;
}

static const char *opt_string(lua_State *L, int index, const char *name) {
  lua_getfield(L, index, name);
  const char *s = sl_to_cstring(L, -1, name);
  lua_pop(L, 1); /* the string stays in the table */
  return s;
}

static int flag_field(lua_State *L, int index, const char *name) {
  lua_getfield(L, index, name);
  int value = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return value;
}

/* The capture fields of an exec spec: max_output (bytes per stream, 0 or
 * absent for all), keep_stdout, keep_stderr, chunk_stdout, chunk_stderr
 * (booleans) and deadline (seconds, 0 or absent for none). */
static sl_capture capture_options(lua_State *L, int index) {
  sl_capture capture = {.limit = SIZE_MAX};
  lua_getfield(L, index, "max_output");
  lua_Integer max = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (max > 0) capture.limit = (size_t)max;
  capture.keep_mask = (flag_field(L, index, "keep_stdout") ? 1 << 1 : 0) |
                      (flag_field(L, index, "keep_stderr") ? 1 << 2 : 0);
  capture.chunk_mask = (flag_field(L, index, "chunk_stdout") ? 1 << 1 : 0) |
                       (flag_field(L, index, "chunk_stderr") ? 1 << 2 : 0);
  lua_getfield(L, index, "deadline");
  capture.deadline = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return capture;
}

/* agent:start(spec, mode). The spec has argv (a list) or command (a
 * string), and optionally env (a list of "NAME=value"), cwd, stdin,
 * stdin_open, timeout_ms, name and the capture fields above. The mode is
 * "capture" (exec) or "stream" (spawn). */
static int l_start(lua_State *L) {
  lagent_check(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  static const char *const modes[] = {"capture", "stream", NULL};
  int mode = luaL_checkoption(L, 3, NULL, modes);
  sl_exec_spec spec = {0};
  spec.argv = string_list(L, 2, "argv");
  spec.env = string_list(L, 2, "env");
  spec.command = opt_string(L, 2, "command");
  spec.cwd = opt_string(L, 2, "cwd");
  lua_getfield(L, 2, "stdin");
  spec.stdin_data = lua_tolstring(L, -1, &spec.stdin_len);
  lua_pop(L, 1);
  lua_getfield(L, 2, "stdin_open");
  spec.stdin_open = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 2, "timeout_ms");
  spec.timeout_ms = (int64_t)lua_tointeger(L, -1);
  lua_pop(L, 1);
  const char *name = opt_string(L, 2, "name");
  sl_capture capture = capture_options(L, 2);
  return sl_process_start(L, 1, &spec, mode == 0 ? SL_OUTPUT_CAPTURE : SL_OUTPUT_STREAM, &capture,
                          name);
}

static int l_attach(lua_State *L) {
  lagent_check(L, 1);
  lua_Integer proc = luaL_checkinteger(L, 2);
  lua_Integer pid = luaL_optinteger(L, 3, 0);
  lua_Integer out = luaL_optinteger(L, 4, 0);
  lua_Integer err = luaL_optinteger(L, 5, 0);
  const char *name = luaL_optstring(L, 6, "?");
  luaL_argcheck(L, proc > 0, 2, "expected a process id > 0");
  luaL_argcheck(L, out >= 0 && err >= 0, 4, "expected offsets >= 0");
  return sl_process_attach(L, 1, proc, pid, (uint64_t)out, (uint64_t)err, name);
}

/* ---- Connection control ---- */

static int l_pause(lua_State *L) {
  sl_agent_pause(lagent_check(L, 1)->client);
  return 0;
}

static int l_resume(lua_State *L) {
  sl_agent_resume(lagent_check(L, 1)->client);
  return 0;
}

static int l_close(lua_State *L) {
  release_ud(luaL_checkudata(L, 1, SL_AGENT_MT));
  return 0;
}

/* agent:shutdown(errname, message): close the client now, also for the
 * process handles that use it. They and the requests still pending or
 * queued fail with this error (the sandbox has ended, say) instead of
 * ECANCELED. */
static int l_shutdown(lua_State *L) {
  agent_ud *ud = luaL_checkudata(L, 1, SL_AGENT_MT);
  const char *name = luaL_checkstring(L, 2);
  const char *message = luaL_checkstring(L, 3);
  lagent *a = ud->a;
  if (a == NULL) return 0;
  int code = sl_errcode(name);
  sl_error_set(&a->ended, code ? code : EIO, "%s", message);
  a->refs++;
  close_client(a);
  release_ud(ud);
  lagent_release(a);
  return 0;
}

static int l_is_open(lua_State *L) {
  agent_ud *ud = luaL_checkudata(L, 1, SL_AGENT_MT);
  lua_pushboolean(L, ud->a != NULL && ud->a->client != NULL);
  return 1;
}

static int l_tostring(lua_State *L) {
  agent_ud *ud = luaL_checkudata(L, 1, SL_AGENT_MT);
  if (ud->a == NULL || ud->a->client == NULL)
    lua_pushliteral(L, "sandlot.agent (closed)");
  else
    lua_pushfstring(L, "sandlot.agent (%s)", ud->a->path);
  return 1;
}

/* Runs when the Lua state closes, after every agent and process userdata
 * was finalized (it was created before them): closes the clients that
 * process handles still kept open, so their handles close before the
 * loop does. */
static int l_close_all(lua_State *L) {
  (void)L;
  for (agent_node *n = open_agents; n != NULL; n = n->next) n->a->refs++;
  for (agent_node *n = open_agents; n != NULL; n = n->next) close_client(n->a);
  agent_node *n = open_agents;
  while (n != NULL) {
    agent_node *next = n->next;
    lagent_release(n->a); /* frees it unless a process handle still references it */
    n = next;
  }
  return 0;
}

void sl_open_agent(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"connect", l_connect},
      {"call", l_call},
      {"read_file", l_read_file},
      {"write_file", l_write_file},
      {"start", l_start},
      {"attach", l_attach},
      {"pause", l_pause},
      {"resume", l_resume},
      {"close", l_close},
      {"shutdown", l_shutdown},
      {"is_open", l_is_open},
      {NULL, NULL},
  };
  luaL_newmetatable(L, SL_AGENT_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, l_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  lua_pushcfunction(L, l_agent_open);
  lua_setfield(L, -2, "agent_open");
  /* The maximum of data bytes one request should carry, so that a
   * request with other fields still fits SL_PROTO_MAX_FRAME. */
  lua_pushinteger(L, SL_PROTO_CHUNK);
  lua_setfield(L, -2, "agent_chunk_size");

  /* The SL_FILE_* bits of core/proto.h. */
  static const struct {
    const char *name;
    int bit;
  } file_flags[] = {{"create", SL_FILE_CREATE},       {"truncate", SL_FILE_TRUNCATE},
                    {"append", SL_FILE_APPEND},       {"excl", SL_FILE_EXCL},
                    {"parents", SL_FILE_PARENTS},     {"recursive", SL_FILE_RECURSIVE},
                    {"nofollow", SL_FILE_NOFOLLOW},   {"noreplace", SL_FILE_NOREPLACE}};
  lua_createtable(L, 0, 8);
  for (size_t i = 0; i < sizeof file_flags / sizeof file_flags[0]; i++) {
    lua_pushinteger(L, file_flags[i].bit);
    lua_setfield(L, -2, file_flags[i].name);
  }
  lua_setfield(L, -2, "file_flags");

  /* A sentinel whose finalizer closes what is left when the state closes. */
  lua_newuserdatauv(L, 0, 0);
  lua_newtable(L);
  lua_pushcfunction(L, l_close_all);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "sandlot.agent.sentinel");
}
