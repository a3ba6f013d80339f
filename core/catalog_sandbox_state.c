/* Sandbox state changes. Each call reads the current state and writes the
 * change in one write transaction, so two processes changing one sandbox
 * never both succeed on a stale state. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_internal.h"

/* allowed[from] has bit `to` set for each allowed change. */
#define BIT(state) (1u << (state))
static const unsigned allowed[] = {
    [SL_SANDBOX_CREATING] = BIT(SL_SANDBOX_RUNNING) | BIT(SL_SANDBOX_DEAD),
    [SL_SANDBOX_RUNNING] = BIT(SL_SANDBOX_FROZEN) | BIT(SL_SANDBOX_PAUSED) | BIT(SL_SANDBOX_DEAD),
    [SL_SANDBOX_FROZEN] = BIT(SL_SANDBOX_RUNNING) | BIT(SL_SANDBOX_PAUSED) | BIT(SL_SANDBOX_DEAD),
    [SL_SANDBOX_PAUSED] = BIT(SL_SANDBOX_RUNNING) | BIT(SL_SANDBOX_DEAD),
    [SL_SANDBOX_DEAD] = 0,
};

int catalog_sandbox_state(sqlite3 *db, const char *id, sl_sandbox_state *state,
                          sl_error *err) {
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(db, "SELECT state FROM sandboxes WHERE id = ?1", &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) {
    *state = SL_SANDBOX_DEAD;
    sl_sandbox_state_parse((const char *)sqlite3_column_text(stmt, 0), state, NULL);
    rc = 0;
  } else if (rc == SQLITE_DONE) {
    rc = sl_error_set(err, ENOENT, "sandbox not found: %s", id);
  } else {
    rc = catalog_sqlite_error(db, rc, err, "read sandbox state");
  }
  sqlite3_finalize(stmt);
  return rc;
}

/* Check the change from -> to; returns 1 when it is a change, 0 when the
 * sandbox is already in that state. */
static int check_change(const char *id, sl_sandbox_state from, sl_sandbox_state to,
                        sl_error *err) {
  if (from == to) return 0;
  if (from == SL_SANDBOX_DEAD) return sl_error_set(err, ESRCH, "sandbox is dead: %s", id);
  if (!(allowed[from] & BIT(to)))
    return sl_error_set(err, EINVAL, "invalid state change for sandbox %s: %s -> %s", id,
                        sl_sandbox_state_name(from), sl_sandbox_state_name(to));
  return 1;
}

/* Write the new state; a dead sandbox no longer has an init process. */
static int write_state(sqlite3 *db, const char *id, sl_sandbox_state state, sl_error *err) {
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(db,
                           "UPDATE sandboxes SET state = ?2, updated_at = ?3, "
                           "state_changed_at = ?3, "
                           "init_pid = CASE WHEN ?2 = 'dead' THEN NULL ELSE init_pid END "
                           "WHERE id = ?1",
                           &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, sl_sandbox_state_name(state), -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 3, sl_catalog_now_ms());
  return catalog_step_done(db, stmt, "update sandbox state", err);
}

/* Read the state and apply the change to `to` when allowed. */
static int change_state(sqlite3 *db, const char *id, sl_sandbox_state to, sl_error *err) {
  sl_sandbox_state from;
  int rc = catalog_sandbox_state(db, id, &from, err);
  if (rc == 0) rc = check_change(id, from, to, err);
  if (rc == 1) rc = write_state(db, id, to, err);
  return rc;
}

static bool valid_state(sl_sandbox_state state) {
  return (unsigned)state <= SL_SANDBOX_DEAD;
}

typedef struct {
  const char *id;
  sl_sandbox_state state;
} state_ctx;

static int set_state_txn(sl_catalog *cat, void *arg, sl_error *err) {
  state_ctx *ctx = arg;
  int rc = change_state(cat->db, ctx->id, ctx->state, err);
  return rc < 0 ? rc : 0;
}

int sl_catalog_sandbox_set_state(sl_catalog *cat, const char *id, sl_sandbox_state state,
                                 sl_error *err) {
  int rc = sl_id_validate(SL_ID_SANDBOX, id, err);
  if (rc < 0) return rc;
  if (!valid_state(state))
    return sl_error_set(err, EINVAL, "invalid sandbox state: %d", (int)state);
  state_ctx ctx = {id, state};
  return catalog_run(cat, CATALOG_WRITE, set_state_txn, &ctx, err);
}

/* ---- running ---- */

typedef struct {
  const char *id;
  const sl_sandbox_process *proc;
  char *cgroups;
} running_ctx;

static int write_process(sqlite3 *db, running_ctx *ctx, sl_error *err) {
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(db,
                           "UPDATE sandboxes SET init_pid = ?2, init_start_time = ?3, "
                           "monitor_pid = ?4, cgroups = ?5, updated_at = ?6 WHERE id = ?1",
                           &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, ctx->id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, ctx->proc->init_pid);
  sqlite3_bind_int64(stmt, 3, ctx->proc->init_start_time);
  sqlite3_bind_int64(stmt, 4, ctx->proc->monitor_pid);
  sqlite3_bind_text(stmt, 5, ctx->cgroups, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 6, sl_catalog_now_ms());
  return catalog_step_done(db, stmt, "update sandbox processes", err);
}

static int set_running_txn(sl_catalog *cat, void *arg, sl_error *err) {
  running_ctx *ctx = arg;
  int rc = ctx->proc->cgroups == NULL
               ? 0
               : catalog_normalize_object(cat->db, "cgroups", ctx->proc->cgroups, true,
                                          &ctx->cgroups, err);
  if (rc == 0) rc = change_state(cat->db, ctx->id, SL_SANDBOX_RUNNING, err);
  if (rc >= 0) rc = write_process(cat->db, ctx, err);
  return rc;
}

int sl_catalog_sandbox_set_running(sl_catalog *cat, const char *id,
                                   const sl_sandbox_process *proc, sl_error *err) {
  int rc = sl_id_validate(SL_ID_SANDBOX, id, err);
  if (rc < 0) return rc;
  if (proc == NULL) return sl_error_set(err, EINVAL, "no process given for sandbox %s", id);
  if (proc->init_pid <= 0 || proc->monitor_pid <= 0 || proc->init_pid > INT32_MAX ||
      proc->monitor_pid > INT32_MAX)
    return sl_error_set(err, EINVAL, "invalid pids for sandbox %s: init %lld, monitor %lld",
                        id, (long long)proc->init_pid, (long long)proc->monitor_pid);
  if (proc->init_start_time < 0)
    return sl_error_set(err, EINVAL, "invalid init start time for sandbox %s: %lld", id,
                        (long long)proc->init_start_time);
  running_ctx ctx = {id, proc, NULL};
  rc = catalog_run(cat, CATALOG_WRITE, set_running_txn, &ctx, err);
  free(ctx.cgroups);
  return rc;
}

/* ---- exited ---- */

typedef struct {
  const char *id;
  int status;
  int signal;
} exit_ctx;

static int has_exit(sqlite3 *db, const char *id, bool *recorded, sl_error *err) {
  int64_t count = 0;
  const char *params[] = {id};
  int rc = catalog_query_int(db,
                             "SELECT count(*) FROM sandboxes WHERE id = ?1 AND "
                             "(exit_status IS NOT NULL OR exit_signal IS NOT NULL)",
                             params, 1, &count, err);
  *recorded = count > 0;
  return rc;
}

static int set_exited_txn(sl_catalog *cat, void *arg, sl_error *err) {
  exit_ctx *ctx = arg;
  sl_sandbox_state from;
  bool recorded = false;
  int rc = catalog_sandbox_state(cat->db, ctx->id, &from, err);
  if (rc == 0 && from == SL_SANDBOX_DEAD) rc = has_exit(cat->db, ctx->id, &recorded, err);
  if (rc == 0 && recorded)
    return sl_error_set(err, ESRCH, "sandbox is dead and its exit is recorded: %s", ctx->id);
  if (rc == 0 && from != SL_SANDBOX_DEAD) rc = write_state(cat->db, ctx->id, SL_SANDBOX_DEAD, err);
  if (rc < 0) return rc;

  sqlite3_stmt *stmt;
  rc = catalog_prepare(cat->db,
                       "UPDATE sandboxes SET exit_status = ?2, exit_signal = ?3, "
                       "updated_at = ?4 WHERE id = ?1",
                       &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, ctx->id, -1, SQLITE_STATIC);
  if (ctx->status >= 0) sqlite3_bind_int(stmt, 2, ctx->status);
  if (ctx->signal > 0) sqlite3_bind_int(stmt, 3, ctx->signal);
  sqlite3_bind_int64(stmt, 4, sl_catalog_now_ms());
  return catalog_step_done(cat->db, stmt, "record sandbox exit", err);
}

int sl_catalog_sandbox_set_exited(sl_catalog *cat, const char *id, int exit_status,
                                  int exit_signal, sl_error *err) {
  int rc = sl_id_validate(SL_ID_SANDBOX, id, err);
  if (rc < 0) return rc;
  bool exited = exit_status >= 0 && exit_status <= 255 && exit_signal == 0;
  bool signaled = exit_status == -1 && exit_signal >= 1 && exit_signal <= 64;
  bool unknown = exit_status == -1 && exit_signal == 0;
  if (!exited && !signaled && !unknown)
    return sl_error_set(err, EINVAL,
                        "invalid exit for sandbox %s: status %d, signal %d (expected status "
                        "0..255 and signal 0, or status -1 and signal 0..64)",
                        id, exit_status, exit_signal);
  exit_ctx ctx = {id, exit_status, exit_signal};
  return catalog_run(cat, CATALOG_WRITE, set_exited_txn, &ctx, err);
}

/* ---- timeout ---- */

typedef struct {
  const char *id;
  int64_t timeout_ms;
  int64_t deadline_at;
  sl_on_timeout action;
} timeout_ctx;

static int set_timeout_txn(sl_catalog *cat, void *arg, sl_error *err) {
  timeout_ctx *ctx = arg;
  sl_sandbox_state state;
  int rc = catalog_sandbox_state(cat->db, ctx->id, &state, err);
  if (rc < 0) return rc;
  if (state == SL_SANDBOX_DEAD) return sl_error_set(err, ESRCH, "sandbox is dead: %s", ctx->id);

  sqlite3_stmt *stmt;
  rc = catalog_prepare(cat->db,
                       "UPDATE sandboxes SET timeout_ms = ?2, deadline_at = ?3, "
                       "on_timeout = ?4, updated_at = ?5 WHERE id = ?1",
                       &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, ctx->id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, ctx->timeout_ms);
  if (ctx->deadline_at > 0) sqlite3_bind_int64(stmt, 3, ctx->deadline_at);
  sqlite3_bind_text(stmt, 4, sl_on_timeout_name(ctx->action), -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 5, sl_catalog_now_ms());
  return catalog_step_done(cat->db, stmt, "update sandbox timeout", err);
}

int sl_catalog_sandbox_set_timeout(sl_catalog *cat, const char *id, int64_t timeout_ms,
                                   int64_t deadline_at, sl_on_timeout on_timeout,
                                   sl_error *err) {
  int rc = sl_id_validate(SL_ID_SANDBOX, id, err);
  if (rc < 0) return rc;
  if (timeout_ms < 0 || deadline_at < 0)
    return sl_error_set(err, EINVAL, "invalid timeout for sandbox %s: %lld ms, deadline %lld",
                        id, (long long)timeout_ms, (long long)deadline_at);
  if ((unsigned)on_timeout > SL_ON_TIMEOUT_PAUSE_FS)
    return sl_error_set(err, EINVAL, "invalid timeout action: %d", (int)on_timeout);
  timeout_ctx ctx = {id, timeout_ms, deadline_at, on_timeout};
  return catalog_run(cat, CATALOG_WRITE, set_timeout_txn, &ctx, err);
}

/* ---- base layer ---- */

typedef struct {
  const char *id;
  const char *layer_id;
} base_ctx;

static int set_base_txn(sl_catalog *cat, void *arg, sl_error *err) {
  base_ctx *ctx = arg;
  sl_sandbox_state state;
  int rc = catalog_sandbox_state(cat->db, ctx->id, &state, err);
  if (rc < 0) return rc;
  if (state == SL_SANDBOX_DEAD) return sl_error_set(err, ESRCH, "sandbox is dead: %s", ctx->id);
  sqlite3_stmt *stmt;
  rc = catalog_prepare(cat->db,
                       "UPDATE sandboxes SET base_layer_id = ?2, updated_at = ?3 WHERE id = ?1 "
                       "AND EXISTS (SELECT 1 FROM layers WHERE id = ?2)",
                       &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, ctx->id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, ctx->layer_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 3, sl_catalog_now_ms());
  rc = catalog_step_done(cat->db, stmt, "update sandbox base layer", err);
  if (rc == 0 && sqlite3_changes(cat->db) == 0)
    rc = sl_error_set(err, ENOENT, "layer not found: %s", ctx->layer_id);
  return rc;
}

int sl_catalog_sandbox_set_base_layer(sl_catalog *cat, const char *id, const char *layer_id,
                                      sl_error *err) {
  int rc = sl_id_validate(SL_ID_SANDBOX, id, err);
  if (rc == 0) rc = sl_id_validate(SL_ID_LAYER, layer_id, err);
  if (rc < 0) return rc;
  base_ctx ctx = {id, layer_id};
  return catalog_run(cat, CATALOG_WRITE, set_base_txn, &ctx, err);
}
