/* sandlot.core.testing: internal functions that exercise the threadpool
 * pattern of async.h with real blocking calls, for the specs. Scripts must
 * not use them, and require "sandlot" does not export them. */
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "async.h"
#include "error.h"
#include "lcore.h"
#include "log.h"
#include "lsandbox.h"

/* Counters since the start of the process, for checking that cancelled
 * work still ran to completion and was freed without pushing results. */
static atomic_long stat_queued, stat_ran, stat_pushed, stat_freed;

typedef struct {
  int kind;
  long ms;      /* sleep and rendezvous timeout */
  int parties;  /* rendezvous */
  char *path;   /* read */
  char *content;
  size_t length;
  int rc;
  sl_error err;
} test_work;

enum { WORK_SLEEP, WORK_READ, WORK_RENDEZVOUS, WORK_BLOCK, WORK_LOG, WORK_PROGRESS };

/* A gate that pool_block waits on until pool_open_gate() opens it. */
static struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int open;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

static struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int arrived;
} rendezvous = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

static int read_file(test_work *w) {
  int fd = open(w->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return sl_error_errno(&w->err, errno, "cannot open %s", w->path);
  size_t cap = 4096;
  w->content = malloc(cap);
  for (;;) {
    if (w->length == cap) w->content = realloc(w->content, cap *= 2);
    ssize_t n = read(fd, w->content + w->length, cap - w->length);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int saved = errno;
      close(fd);
      return sl_error_errno(&w->err, saved, "cannot read %s", w->path);
    }
    if (n == 0) break;
    w->length += (size_t)n;
  }
  close(fd);
  return 0;
}

/* Wait until `parties` pool threads are inside this function at once. It
 * succeeds only when the pool runs that many jobs in parallel. */
static int meet(test_work *w) {
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += w->ms / 1000;
  deadline.tv_nsec += (w->ms % 1000) * 1000000L;
  if (deadline.tv_nsec >= 1000000000L) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&rendezvous.lock);
  rendezvous.arrived++;
  pthread_cond_broadcast(&rendezvous.cond);
  int rc = 0;
  while (rendezvous.arrived < w->parties && rc == 0)
    rc = pthread_cond_timedwait(&rendezvous.cond, &rendezvous.lock, &deadline);
  int arrived = rendezvous.arrived;
  pthread_mutex_unlock(&rendezvous.lock);
  if (arrived < w->parties)
    return sl_error_set(&w->err, ETIMEDOUT, "rendezvous timed out: %d of %d jobs ran at once",
                        arrived, w->parties);
  return 0;
}

static int wait_gate(test_work *w) {
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += w->ms / 1000 + 1;
  pthread_mutex_lock(&gate.lock);
  int rc = 0;
  while (!gate.open && rc == 0) rc = pthread_cond_timedwait(&gate.cond, &gate.lock, &deadline);
  int open = gate.open;
  pthread_mutex_unlock(&gate.lock);
  if (!open) return sl_error_set(&w->err, ETIMEDOUT, "gate stayed closed for %ld ms", w->ms);
  return 0;
}

static void test_work_run(void *data) {
  test_work *w = data;
  atomic_fetch_add(&stat_ran, 1);
  switch (w->kind) {
  case WORK_SLEEP:
    sleep_ms(w->ms);
    break;
  case WORK_READ:
    w->rc = read_file(w);
    break;
  case WORK_RENDEZVOUS:
    w->rc = meet(w);
    break;
  case WORK_BLOCK:
    w->rc = wait_gate(w);
    break;
  case WORK_LOG:
    SL_WARN("testing.pool_log", "%s", w->path);
    break;
  case WORK_PROGRESS:
    for (char *save = NULL, *line = strtok_r(w->path, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save))
      sl_lua_progress_line(line, NULL);
    break;
  }
}

static int test_work_push(lua_State *T, void *data) {
  test_work *w = data;
  atomic_fetch_add(&stat_pushed, 1);
  if (w->rc < 0) return sl_push_error(T, &w->err);
  if (w->kind == WORK_READ)
    lua_pushlstring(T, w->content, w->length);
  else
    lua_pushboolean(T, 1);
  return 1;
}

static void test_work_free(void *data) {
  test_work *w = data;
  atomic_fetch_add(&stat_freed, 1);
  free(w->path);
  free(w->content);
  free(w);
}

static int queue(lua_State *L, test_work *w) {
  atomic_fetch_add(&stat_queued, 1);
  return sl_async_work(L, w, test_work_run, test_work_push, test_work_free);
}

/* testing.pool_sleep(ms): nanosleep on a pool thread; returns true. */
static int l_pool_sleep(lua_State *L) {
  lua_Integer ms = luaL_checkinteger(L, 1);
  luaL_argcheck(L, ms >= 0, 1, "expected milliseconds >= 0");
  sl_async_check(L, "testing.pool_sleep");
  test_work *w = calloc(1, sizeof *w);
  w->kind = WORK_SLEEP;
  w->ms = (long)ms;
  return queue(L, w);
}

/* testing.pool_read(path): the file's content, or the fail tuple. */
static int l_pool_read(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  sl_async_check(L, "testing.pool_read");
  test_work *w = calloc(1, sizeof *w);
  w->kind = WORK_READ;
  w->path = strdup(path);
  return queue(L, w);
}

/* testing.pool_rendezvous(parties, timeout_ms): true once `parties` calls
 * run on pool threads at the same time; ETIMEDOUT otherwise. */
static int l_pool_rendezvous(lua_State *L) {
  lua_Integer parties = luaL_checkinteger(L, 1);
  lua_Integer ms = luaL_checkinteger(L, 2);
  sl_async_check(L, "testing.pool_rendezvous");
  test_work *w = calloc(1, sizeof *w);
  w->kind = WORK_RENDEZVOUS;
  w->parties = (int)parties;
  w->ms = (long)ms;
  return queue(L, w);
}

static int l_pool_rendezvous_reset(lua_State *L) {
  pthread_mutex_lock(&rendezvous.lock);
  rendezvous.arrived = 0;
  pthread_mutex_unlock(&rendezvous.lock);
  return 0;
}

/* testing.pool_block(timeout_ms): occupy a pool thread until
 * testing.pool_open_gate() runs; ETIMEDOUT after timeout_ms. */
static int l_pool_block(lua_State *L) {
  lua_Integer ms = luaL_checkinteger(L, 1);
  sl_async_check(L, "testing.pool_block");
  test_work *w = calloc(1, sizeof *w);
  w->kind = WORK_BLOCK;
  w->ms = (long)ms;
  return queue(L, w);
}

/* testing.pool_log(text): log a warning record from a pool thread. */
static int l_pool_log(lua_State *L) {
  const char *text = luaL_checkstring(L, 1);
  sl_async_check(L, "testing.pool_log");
  test_work *w = calloc(1, sizeof *w);
  w->kind = WORK_LOG;
  w->path = strdup(text);
  return queue(L, w);
}

/* testing.pool_progress(text): report each line of `text` from a pool
 * thread as template build output. */
static int l_pool_progress(lua_State *L) {
  const char *text = luaL_checkstring(L, 1);
  sl_async_check(L, "testing.pool_progress");
  test_work *w = calloc(1, sizeof *w);
  w->kind = WORK_PROGRESS;
  w->path = strdup(text);
  return queue(L, w);
}

/* testing.pool_open_gate(open): open (default) or close the gate. */
static int l_pool_open_gate(lua_State *L) {
  pthread_mutex_lock(&gate.lock);
  gate.open = lua_isnone(L, 1) || lua_toboolean(L, 1);
  pthread_cond_broadcast(&gate.cond);
  pthread_mutex_unlock(&gate.lock);
  return 0;
}

static int l_pool_stats(lua_State *L) {
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, atomic_load(&stat_queued));
  lua_setfield(L, -2, "queued");
  lua_pushinteger(L, atomic_load(&stat_ran));
  lua_setfield(L, -2, "ran");
  lua_pushinteger(L, atomic_load(&stat_pushed));
  lua_setfield(L, -2, "pushed");
  lua_pushinteger(L, atomic_load(&stat_freed));
  lua_setfield(L, -2, "freed");
  return 1;
}

/* testing.fail(errno_name, message): the fail tuple sl_push_error makes. */
static int l_fail(lua_State *L) {
  sl_error err;
  sl_error_set(&err, sl_errcode(luaL_checkstring(L, 1)), "%s", luaL_checkstring(L, 2));
  return sl_push_error(L, &err);
}

void sl_open_testing(lua_State *L) {
  static const luaL_Reg functions[] = {
      {"pool_sleep", l_pool_sleep},
      {"pool_read", l_pool_read},
      {"pool_rendezvous", l_pool_rendezvous},
      {"pool_rendezvous_reset", l_pool_rendezvous_reset},
      {"pool_block", l_pool_block},
      {"pool_open_gate", l_pool_open_gate},
      {"pool_log", l_pool_log},
      {"pool_progress", l_pool_progress},
      {"pool_stats", l_pool_stats},
      {"fail", l_fail},
      {NULL, NULL},
  };
  luaL_newlib(L, functions);
  lua_setfield(L, -2, "testing");
}
