/* The catalog schema and its migrations.
 *
 * migrations[i] turns schema version i into version i + 1; PRAGMA
 * user_version records the version reached. A released migration is never
 * edited: a change to the schema is a new entry at the end, and
 * SL_CATALOG_SCHEMA_VERSION grows by one. Tables are STRICT, so a value
 * of the wrong type is rejected rather than stored. */
#include <errno.h>
#include <stdio.h>

#include "catalog_internal.h"
#include "log.h"

/* Version 1: the first schema. Snapshots were inserted when complete and
 * had a name but no tag, labels, lineage or expiry. */
static const char schema_v1[] =
    "CREATE TABLE layers ("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  path TEXT NOT NULL,"
    "  size_bytes INTEGER NOT NULL DEFAULT 0 CHECK (size_bytes >= 0),"
    "  created_at INTEGER NOT NULL,"
    "  owner_kind TEXT NOT NULL CHECK (owner_kind IN ('template', 'snapshot')),"
    "  owner_id TEXT NOT NULL"
    ") STRICT;"

    "CREATE TABLE templates ("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  name TEXT NOT NULL,"
    "  spec_hash TEXT NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('building', 'ready')),"
    "  created_at INTEGER NOT NULL,"
    "  built_at INTEGER"
    ") STRICT;"
    "CREATE UNIQUE INDEX templates_ready_name ON templates(name) WHERE status = 'ready';"
    "CREATE UNIQUE INDEX templates_building_name ON templates(name)"
    "  WHERE status = 'building';"

    "CREATE TABLE template_layers ("
    "  template_id TEXT NOT NULL REFERENCES templates(id) ON DELETE CASCADE,"
    "  position INTEGER NOT NULL,"
    "  layer_id TEXT NOT NULL REFERENCES layers(id),"
    "  PRIMARY KEY (template_id, position)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE INDEX template_layers_layer ON template_layers(layer_id);"

    "CREATE TABLE sandboxes ("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  backend TEXT NOT NULL CHECK (backend IN ('process', 'vm')),"
    "  state TEXT NOT NULL"
    "    CHECK (state IN ('creating', 'running', 'frozen', 'paused', 'dead')),"
    "  template_name TEXT,"
    "  source_snapshot_id TEXT,"
    "  base_layer_id TEXT REFERENCES layers(id) ON DELETE SET NULL,"
    "  init_pid INTEGER,"
    "  init_start_time INTEGER,"
    "  monitor_pid INTEGER,"
    "  cgroups TEXT,"
    "  timeout_ms INTEGER NOT NULL DEFAULT 0,"
    "  deadline_at INTEGER,"
    "  on_timeout TEXT NOT NULL DEFAULT 'kill'"
    "    CHECK (on_timeout IN ('kill', 'pause', 'pause_fs')),"
    "  exit_status INTEGER,"
    "  exit_signal INTEGER,"
    "  options TEXT NOT NULL DEFAULT '{}',"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  state_changed_at INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX sandboxes_created ON sandboxes(created_at, id);"
    "CREATE INDEX sandboxes_base_layer ON sandboxes(base_layer_id);"

    "CREATE TABLE snapshots ("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  name TEXT,"
    "  source_sandbox_id TEXT NOT NULL,"
    "  template_name TEXT,"
    "  kind TEXT NOT NULL CHECK (kind IN ('full', 'fs')),"
    "  backend TEXT NOT NULL CHECK (backend IN ('process', 'vm')),"
    "  layer_id TEXT NOT NULL REFERENCES layers(id),"
    "  image_dir TEXT NOT NULL,"
    "  size_bytes INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX snapshots_created ON snapshots(created_at, id);"
    "CREATE INDEX snapshots_sandbox ON snapshots(source_sandbox_id);"
    "CREATE INDEX snapshots_name ON snapshots(name);"
    "CREATE INDEX snapshots_layer ON snapshots(layer_id);";

/* Version 2: snapshots get a pending state (visible when ready), tags,
 * labels, lineage and expiry, and are rebuilt because SQLite cannot add a
 * CHECK-constrained state column to existing rows otherwise. Layers get
 * their parent, derived for existing rows from template order and from
 * the base layer of each snapshot's source sandbox. Listing indexes cover
 * (filter, created_at, id), so a page is an index range scan without a
 * sort. The cursor key signs listing cursors. */
static const char schema_v2[] =
    "ALTER TABLE layers ADD COLUMN parent_id TEXT REFERENCES layers(id);"
    "CREATE INDEX layers_parent ON layers(parent_id);"
    "UPDATE layers SET parent_id = ("
    "  SELECT below.layer_id FROM template_layers t JOIN template_layers below"
    "    ON below.template_id = t.template_id AND below.position = t.position - 1"
    "  WHERE t.layer_id = layers.id LIMIT 1)"
    "WHERE owner_kind = 'template';"
    "UPDATE layers SET parent_id = ("
    "  SELECT b.base_layer_id FROM snapshots s JOIN sandboxes b ON b.id = s.source_sandbox_id"
    "  WHERE s.layer_id = layers.id AND b.base_layer_id <> layers.id)"
    "WHERE owner_kind = 'snapshot';"

    "ALTER TABLE sandboxes ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';"
    "CREATE INDEX sandboxes_state ON sandboxes(state, created_at, id);"

    "CREATE TABLE snapshots_v2 ("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  state TEXT NOT NULL CHECK (state IN ('pending', 'ready')),"
    "  name TEXT,"
    "  tag TEXT CHECK (tag IS NULL OR name IS NOT NULL),"
    "  labels TEXT NOT NULL DEFAULT '{}',"
    "  source_sandbox_id TEXT NOT NULL,"
    "  parent_id TEXT,"
    "  template_name TEXT,"
    "  kind TEXT NOT NULL CHECK (kind IN ('full', 'fs')),"
    "  backend TEXT NOT NULL CHECK (backend IN ('process', 'vm')),"
    "  layer_id TEXT NOT NULL REFERENCES layers(id),"
    "  image_dir TEXT NOT NULL,"
    "  size_bytes INTEGER NOT NULL DEFAULT 0 CHECK (size_bytes >= 0),"
    "  started_at INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  expires_at INTEGER"
    ") STRICT;"
    "INSERT INTO snapshots_v2 (id, state, name, source_sandbox_id, parent_id, template_name,"
    "    kind, backend, layer_id, image_dir, size_bytes, started_at, created_at)"
    "  SELECT s.id, 'ready', s.name, s.source_sandbox_id,"
    "    (SELECT b.source_snapshot_id FROM sandboxes b WHERE b.id = s.source_sandbox_id),"
    "    s.template_name, s.kind, s.backend, s.layer_id, s.image_dir, s.size_bytes,"
    "    s.created_at, s.created_at"
    "  FROM snapshots s;"
    "DROP TABLE snapshots;"
    "ALTER TABLE snapshots_v2 RENAME TO snapshots;"
    "CREATE INDEX snapshots_ready ON snapshots(created_at, id) WHERE state = 'ready';"
    "CREATE INDEX snapshots_ready_name ON snapshots(name, created_at, id)"
    "  WHERE state = 'ready';"
    "CREATE INDEX snapshots_ready_sandbox ON snapshots(source_sandbox_id, created_at, id)"
    "  WHERE state = 'ready';"
    "CREATE UNIQUE INDEX snapshots_name_tag ON snapshots(name, tag) WHERE tag IS NOT NULL;"
    "CREATE UNIQUE INDEX snapshots_layer ON snapshots(layer_id);"
    "CREATE INDEX snapshots_expiry ON snapshots(expires_at)"
    "  WHERE state = 'ready' AND expires_at IS NOT NULL;"
    "CREATE INDEX snapshots_pending ON snapshots(started_at) WHERE state = 'pending';"

    "CREATE TABLE snapshot_labels ("
    "  snapshot_id TEXT NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,"
    "  key TEXT NOT NULL,"
    "  value TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  PRIMARY KEY (snapshot_id, key)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE INDEX snapshot_labels_match ON snapshot_labels(key, value, created_at, snapshot_id);"

    "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value ANY) STRICT;"
    "INSERT INTO meta (key, value) VALUES ('cursor_key', randomblob(16));";

static const char *const migrations[] = {schema_v1, schema_v2};

_Static_assert(sizeof migrations / sizeof migrations[0] == SL_CATALOG_SCHEMA_VERSION,
               "one migration per schema version");

int catalog_schema_version(sqlite3 *db, int *version, sl_error *err) {
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(db, "PRAGMA user_version", &stmt, err);
  if (rc < 0) return rc;
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) {
    *version = sqlite3_column_int(stmt, 0);
    rc = 0;
  } else {
    rc = catalog_sqlite_error(db, rc, err, "read schema version");
  }
  sqlite3_finalize(stmt);
  return rc;
}

static int check_foreign_keys(sqlite3 *db, sl_error *err) {
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(db, "PRAGMA foreign_key_check", &stmt, err);
  if (rc < 0) return rc;
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) {
    rc = sl_error_set(err, EIO, "migration broke a foreign key in table %s (row %lld)",
                      (const char *)sqlite3_column_text(stmt, 0),
                      (long long)sqlite3_column_int64(stmt, 1));
  } else {
    rc = rc == SQLITE_DONE ? 0 : catalog_sqlite_error(db, rc, err, "check foreign keys");
  }
  sqlite3_finalize(stmt);
  return rc;
}

/* Apply the migrations from the current version up to `target` inside an
 * open write transaction. */
static int apply(sqlite3 *db, int target, sl_error *err) {
  int version = 0;
  int rc = catalog_schema_version(db, &version, err);
  if (rc < 0) return rc;
  if (version > SL_CATALOG_SCHEMA_VERSION)
    return sl_error_set(err, ENOTSUP,
                        "catalog schema version %d is newer than this sandlot supports (%d); "
                        "use a newer sandlot",
                        version, SL_CATALOG_SCHEMA_VERSION);

  for (int v = version; v < target; v++) {
    rc = sqlite3_exec(db, migrations[v], NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
      catalog_sqlite_error(db, rc, err, "SQL failed");
      return sl_error_wrap(err, "migrate catalog schema %d to %d", v, v + 1);
    }
    SL_INFO("catalog.migrate", "from=%d to=%d", v, v + 1);
  }
  if (version >= target) return 0;

  rc = check_foreign_keys(db, err);
  if (rc < 0) return rc;
  char sql[64];
  snprintf(sql, sizeof sql, "PRAGMA user_version = %d", target);
  return catalog_exec(db, sql, err);
}

/* Foreign key enforcement cannot change inside a transaction, and the
 * table rebuilds of a migration need it off, so it is switched off around
 * the migration and checked with foreign_key_check before the commit. */
int catalog_migrate(sqlite3 *db, int target, int busy_timeout_ms, sl_error *err) {
  if (target < 1 || target > SL_CATALOG_SCHEMA_VERSION)
    return sl_error_set(err, EINVAL, "invalid schema version %d (expected 1..%d)", target,
                        SL_CATALOG_SCHEMA_VERSION);
  int rc = catalog_exec(db, "PRAGMA foreign_keys = OFF", err);
  if (rc == 0) rc = catalog_begin_immediate(db, busy_timeout_ms, err);
  if (rc < 0) return rc;

  rc = apply(db, target, err);
  if (rc == 0) rc = catalog_exec(db, "COMMIT", err);
  if (rc < 0) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}
