/* The catalog: one SQLite database (catalog.db in the store) that records
 * sandboxes, snapshots, templates and layers.
 *
 * Concurrency. Several sandlot processes use one catalog at once (a REPL,
 * a scheduled script, the monitors). The database runs in WAL mode, so
 * readers do not wait for writers. Every public function is one
 * transaction: writes start with BEGIN IMMEDIATE and wait for other
 * writers up to the busy timeout (default 10 s), then fail with EBUSY
 * without writing anything. An sl_catalog handle may be used from any
 * thread (the uv threadpool included): a mutex serializes the calls made
 * through one handle, and SQLite runs in serialized mode. Open one handle
 * per thread for parallel reads.
 *
 * Errors (core/error.h):
 *   - ENOENT: unknown id ("snapshot not found: sn-...");
 *   - EINVAL: bad input, with the bad value in the message; nothing is
 *     written;
 *   - EBUSY: the database stayed locked beyond the busy timeout;
 *   - EEXIST: a duplicate id, name:tag or template build;
 *   - ESRCH: an operation that a dead sandbox cannot take.
 *
 * Times are milliseconds since the Unix epoch (CLOCK_REALTIME). Strings
 * in result structs are NUL-terminated; "" means "none". JSON fields are
 * heap strings owned by the struct and released by its clear function.
 *
 * Listings are keyset-paginated, newest first, over (created_at, id). A
 * page carries an opaque cursor; passing it back continues after the last
 * row of that page. Rows inserted between two calls never shift later
 * pages. A cursor is bound to its catalog and to the filters of its
 * listing: a changed or foreign cursor fails with EINVAL. */
#ifndef SANDLOT_CATALOG_H
#define SANDLOT_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "store.h"

/* The schema version this code writes; a database with a higher
 * PRAGMA user_version is rejected at open. */
#define SL_CATALOG_SCHEMA_VERSION 2

#define SL_CATALOG_DEFAULT_BUSY_TIMEOUT_MS 10000

/* Page size bounds of every listing. */
#define SL_LIST_DEFAULT_LIMIT 50
#define SL_LIST_MAX_LIMIT 1000

/* Buffer size of a cursor string (the current format uses 32 characters). */
#define SL_CURSOR_SIZE 64

/* Maximum length of a template spec hash (hex digits), and the size of a
 * buffer for one. */
#define SL_HASH_MAX 128
#define SL_HASH_SIZE (SL_HASH_MAX + 1)

/* Limits of label maps ({"key": "value"}) on sandboxes and snapshots. Keys
 * are 1..63 characters from [A-Za-z0-9._/-]; values are strings. */
#define SL_LABELS_MAX 64
#define SL_LABEL_KEY_MAX 63
#define SL_LABEL_VALUE_MAX 255

/* Largest JSON text accepted for sandbox options, in bytes. */
#define SL_OPTIONS_MAX 65536

typedef struct sl_catalog sl_catalog;

/* ------------------------------------------------------------------ */
/* Enumerations and their names in the database and in Lua.            */

typedef enum { SL_BACKEND_PROCESS = 0, SL_BACKEND_VM = 1 } sl_backend;

typedef enum {
  SL_SANDBOX_CREATING = 0,
  SL_SANDBOX_RUNNING = 1,
  SL_SANDBOX_FROZEN = 2, /* stopped by the freezer, memory kept */
  SL_SANDBOX_PAUSED = 3, /* dumped to disk, no process left */
  SL_SANDBOX_DEAD = 4,
} sl_sandbox_state;

typedef enum {
  SL_ON_TIMEOUT_KILL = 0,
  SL_ON_TIMEOUT_PAUSE = 1,    /* snapshot memory and filesystem, then stop */
  SL_ON_TIMEOUT_PAUSE_FS = 2, /* keep the filesystem only, then stop */
} sl_on_timeout;

typedef enum {
  SL_SNAPSHOT_FULL = 0, /* memory and filesystem */
  SL_SNAPSHOT_FS = 1,   /* filesystem only */
} sl_snapshot_kind;

typedef enum {
  SL_LAYER_OWNER_TEMPLATE = 0, /* built by a template build */
  SL_LAYER_OWNER_SNAPSHOT = 1, /* captured by a snapshot */
} sl_layer_owner;

typedef enum { SL_TEMPLATE_BUILDING = 0, SL_TEMPLATE_READY = 1 } sl_template_status;

/* Names: "process" "vm"; "creating" "running" "frozen" "paused" "dead";
 * "kill" "pause" "pause_fs"; "full" "fs"; "template" "snapshot";
 * "building" "ready". A value out of range gives "invalid". */
const char *sl_backend_name(sl_backend backend);
const char *sl_sandbox_state_name(sl_sandbox_state state);
const char *sl_on_timeout_name(sl_on_timeout action);
const char *sl_snapshot_kind_name(sl_snapshot_kind kind);
const char *sl_layer_owner_name(sl_layer_owner owner);
const char *sl_template_status_name(sl_template_status status);

/* Parse a name from the list above into `out`. Fails with EINVAL naming
 * the value and the accepted names; NULL is invalid. */
int sl_backend_parse(const char *name, sl_backend *out, sl_error *err);
int sl_sandbox_state_parse(const char *name, sl_sandbox_state *out, sl_error *err);
int sl_on_timeout_parse(const char *name, sl_on_timeout *out, sl_error *err);
int sl_snapshot_kind_parse(const char *name, sl_snapshot_kind *out, sl_error *err);

/* ------------------------------------------------------------------ */
/* Opening.                                                            */

/* Open (creating when missing, with mode 0600) the catalog at `path` and
 * bring its schema to SL_CATALOG_SCHEMA_VERSION, all pending migrations
 * in one transaction. Concurrent openers wait for each other; only one
 * migrates. Fails with EINVAL (NULL or empty path), ENOTSUP (the database
 * comes from a newer sandlot: nothing is changed in it), EIO (not an
 * SQLite database, or corrupt), EBUSY (locked beyond the busy timeout) or
 * the errno of the failed open. A symlink at `path` is rejected. On
 * success `*out` is a handle for sl_catalog_close(). */
int sl_catalog_open(const char *path, sl_catalog **out, sl_error *err);

/* Open the catalog of an open store (sl_store_catalog_path()). */
int sl_catalog_open_store(const sl_store *store, sl_catalog **out, sl_error *err);

/* Close the handle; NULL is ignored. No call may be running on it. */
void sl_catalog_close(sl_catalog *cat);

/* Set how long a call waits for another process's write transaction
 * before it fails with EBUSY. `ms` below 0 counts as 0 (fail at once). */
void sl_catalog_set_busy_timeout(sl_catalog *cat, int ms);

/* The current time in milliseconds since the epoch, as the catalog
 * records it. */
int64_t sl_catalog_now_ms(void);

/* A list of ids, owned by the struct; release with sl_id_list_free(). */
typedef struct sl_id_list {
  char (*ids)[SL_ID_SIZE];
  size_t count;
} sl_id_list;

void sl_id_list_free(sl_id_list *list);

/* ------------------------------------------------------------------ */
/* Sandboxes.                                                          */

/* One sandbox row. Output of get, list and insert. */
typedef struct sl_sandbox {
  char id[SL_ID_SIZE];
  sl_backend backend;
  sl_sandbox_state state;
  char template_name[SL_NAME_SIZE];     /* "" when created from no template */
  char source_snapshot_id[SL_ID_SIZE];  /* the snapshot it was forked from, or "" */
  char base_layer_id[SL_ID_SIZE];       /* top of its read-only layers, or "" */
  int64_t init_pid;                     /* host pid of its init, 0 when none */
  int64_t init_start_time;              /* start time of that pid (/proc/<pid>/stat
                                           field 22, clock ticks since boot), so a
                                           reused pid can be told apart */
  int64_t monitor_pid;                  /* 0 when none */
  char *cgroups;                        /* JSON {"controller": "path"}, or NULL */
  int64_t timeout_ms;                   /* 0: no timeout */
  int64_t deadline_at;                  /* 0: no deadline */
  sl_on_timeout on_timeout;
  int exit_status;                      /* 0..255, or -1 when unknown */
  int exit_signal;                      /* terminating signal, or 0 */
  char *options;                        /* JSON object (memory, pids, env, ...) */
  char *labels;                         /* JSON object of strings */
  int64_t created_at;
  int64_t updated_at;
  int64_t state_changed_at;
} sl_sandbox;

/* Release the heap fields of `sb` and zero it. NULL is ignored. */
void sl_sandbox_clear(sl_sandbox *sb);

/* What sl_catalog_sandbox_insert() records. */
typedef struct sl_sandbox_spec {
  const char *id;                 /* required: a new id from sl_id_new() */
  sl_backend backend;
  const char *template_name;      /* NULL, or the name of a ready template */
  const char *source_snapshot_id; /* NULL, or a ready snapshot to fork */
  int64_t timeout_ms;             /* >= 0; 0: no timeout */
  sl_on_timeout on_timeout;
  const char *options;            /* NULL ("{}") or a JSON object */
  const char *labels;             /* NULL ("{}") or a JSON object of strings */
} sl_sandbox_spec;

/* Insert a sandbox in state "creating". Its base layer is resolved in the
 * same transaction, so a concurrent template rebuild or layer collection
 * cannot remove it: the source snapshot's layer for a fork, else the top
 * layer of the template, else none. A fork takes the template name of its
 * snapshot (a different `template_name` is EINVAL) and must use the
 * snapshot's backend (EINVAL). A timeout sets deadline_at to now +
 * timeout_ms. Fails with EINVAL (bad id, enum, JSON, label or name),
 * ENOENT (template or snapshot not found) or EEXIST (id taken). `out`,
 * when not NULL, receives the new row (release with sl_sandbox_clear). */
int sl_catalog_sandbox_insert(sl_catalog *cat, const sl_sandbox_spec *spec, sl_sandbox *out,
                              sl_error *err);

/* Fill `out` with the sandbox `id`. Fails with EINVAL or ENOENT. */
int sl_catalog_sandbox_get(sl_catalog *cat, const char *id, sl_sandbox *out, sl_error *err);

/* Change the state of sandbox `id`. Allowed changes:
 *     creating -> running, dead
 *     running  -> frozen, paused, dead
 *     frozen   -> running, paused, dead
 *     paused   -> running, dead
 * Setting the current state again succeeds and changes nothing. Leaving
 * "dead" fails with ESRCH; any other change fails with EINVAL naming both
 * states. Sets state_changed_at and updated_at. */
int sl_catalog_sandbox_set_state(sl_catalog *cat, const char *id, sl_sandbox_state state,
                                 sl_error *err);

/* The processes of a running sandbox. */
typedef struct sl_sandbox_process {
  int64_t init_pid;        /* > 0 */
  int64_t init_start_time; /* >= 0 */
  int64_t monitor_pid;     /* > 0 */
  const char *cgroups;     /* NULL or a JSON object of strings */
} sl_sandbox_process;

/* Record the processes of sandbox `id` and move it to "running", in one
 * transaction. The move follows the rules of sl_catalog_sandbox_set_state
 * (from creating, frozen or paused; running again only updates the
 * processes). Fails with EINVAL (pid <= 0, start time < 0, bad JSON),
 * ENOENT, or ESRCH (dead). */
int sl_catalog_sandbox_set_running(sl_catalog *cat, const char *id,
                                   const sl_sandbox_process *proc, sl_error *err);

/* Mark sandbox `id` dead and record how it ended: `exit_status` 0..255
 * with `exit_signal` 0, or `exit_status` -1 with a signal 1..64, or both
 * "unknown" (-1, 0). Clears init_pid. A dead sandbox accepts this only
 * while it has no recorded exit, because the monitor may learn the status
 * after another process marked the row dead. Otherwise it fails with
 * ESRCH. */
int sl_catalog_sandbox_set_exited(sl_catalog *cat, const char *id, int exit_status,
                                  int exit_signal, sl_error *err);

/* Set the timeout of sandbox `id`: `timeout_ms` >= 0 (0: none),
 * `deadline_at` >= 0 (0: none) and the action taken when it passes. Fails
 * with EINVAL, ENOENT or ESRCH (dead). */
int sl_catalog_sandbox_set_timeout(sl_catalog *cat, const char *id, int64_t timeout_ms,
                                   int64_t deadline_at, sl_on_timeout on_timeout,
                                   sl_error *err);

/* Make layer `layer_id` the base layer of sandbox `id`, which keeps its
 * source snapshot: a VM sandbox's disk overlay stacks on the layer of
 * its last snapshot, so that layer must stay while it runs. The previous
 * base layer is left for sl_catalog_layer_collect(). Fails with EINVAL,
 * ENOENT (sandbox or layer not found; a pending snapshot's layer counts)
 * or ESRCH (dead). */
int sl_catalog_sandbox_set_base_layer(sl_catalog *cat, const char *id, const char *layer_id,
                                      sl_error *err);

/* Make ready snapshot `snapshot_id` the source of sandbox `id` and its
 * layer the sandbox's base layer, in one transaction: a rollback in place
 * remounts the sandbox on that snapshot's layers. The snapshot must have
 * the sandbox's backend and template (EINVAL). The previous base layer
 * is left for sl_catalog_layer_collect(). Fails with EINVAL, ENOENT
 * (sandbox or snapshot not found) or ESRCH (dead). */
int sl_catalog_sandbox_rebase(sl_catalog *cat, const char *id, const char *snapshot_id,
                              sl_error *err);

/* Delete the row of a dead sandbox. Its snapshots stay, and keep naming
 * it as their source, so listing snapshots by this sandbox id still finds
 * them. Layers are left for sl_catalog_layer_collect(). Fails with EINVAL,
 * ENOENT, or EBUSY when the sandbox is not dead (kill it first). */
int sl_catalog_sandbox_delete(sl_catalog *cat, const char *id, sl_error *err);

typedef struct sl_sandbox_query {
  const char *state;  /* NULL, or only sandboxes in this state ("running") */
  int limit;          /* 1..SL_LIST_MAX_LIMIT */
  const char *cursor; /* NULL for the first page, else a page's next_cursor */
} sl_sandbox_query;

#define SL_SANDBOX_QUERY_INIT {NULL, SL_LIST_DEFAULT_LIMIT, NULL}

typedef struct sl_sandbox_page {
  sl_sandbox *items;
  size_t count;
  bool has_next;                     /* another page follows */
  char next_cursor[SL_CURSOR_SIZE];  /* "" when !has_next */
} sl_sandbox_page;

void sl_sandbox_page_free(sl_sandbox_page *page);

/* Fill `page` with up to `limit` sandboxes, newest first. Fails with
 * EINVAL for an invalid state name, a limit outside 1..1000, or a cursor
 * that is empty, malformed, changed or from another listing. */
int sl_catalog_sandbox_list(sl_catalog *cat, const sl_sandbox_query *query,
                            sl_sandbox_page *page, sl_error *err);

/* ------------------------------------------------------------------ */
/* Snapshots.                                                          */

/* A snapshot becomes visible when it is complete: sl_catalog_snapshot_begin
 * inserts a "pending" row (reserving its id, name:tag and layer), and
 * sl_catalog_snapshot_commit makes it "ready". Get, resolve and list see
 * ready snapshots only. created_at is the commit time, so a snapshot that
 * becomes visible is newer than every page already handed out. */

typedef struct sl_snapshot {
  char id[SL_ID_SIZE];
  char name[SL_NAME_SIZE];             /* "" when unnamed */
  char tag[SL_NAME_SIZE];              /* "" when untagged */
  char *labels;                        /* JSON object of strings */
  char source_sandbox_id[SL_ID_SIZE];  /* the sandbox it was taken of; the
                                          sandbox row may be gone */
  char parent_id[SL_ID_SIZE];          /* that sandbox's source snapshot, or "" */
  char template_name[SL_NAME_SIZE];    /* template of that sandbox, or "" */
  sl_snapshot_kind kind;
  sl_backend backend;
  char layer_id[SL_ID_SIZE];           /* the layer it owns */
  char *image_dir;                     /* CRIU images or VM state */
  int64_t size_bytes;
  int64_t created_at;
  int64_t expires_at;                  /* 0: never */
} sl_snapshot;

void sl_snapshot_clear(sl_snapshot *sn);

/* What sl_catalog_snapshot_begin() records. */
typedef struct sl_snapshot_spec {
  const char *id;                /* required: a new sn- id */
  const char *source_sandbox_id; /* required: an existing sandbox, not dead */
  const char *name;              /* NULL or a name (sl_name_validate) */
  const char *tag;               /* NULL or a tag; needs a name */
  const char *labels;            /* NULL ("{}") or a JSON object of strings */
  sl_snapshot_kind kind;
  const char *layer_id;          /* required: the new layer of this snapshot */
  const char *layer_path;        /* required: absolute path of that layer */
  const char *image_dir;         /* required: absolute path */
  int64_t expires_at;            /* 0: never */
} sl_snapshot_spec;

/* Insert a pending snapshot and its layer in one transaction. Derived from
 * the source sandbox: backend, template name, parent snapshot (the
 * sandbox's source snapshot) and the layer's parent (the sandbox's base
 * layer, so the new layer stacks on the one the sandbox mounted). Fails
 * with EINVAL (bad input, tag without name), ENOENT (sandbox not found),
 * ESRCH (sandbox dead), EBUSY (sandbox still creating) or EEXIST (id,
 * layer id or name:tag taken, pending snapshots included). */
int sl_catalog_snapshot_begin(sl_catalog *cat, const sl_snapshot_spec *spec, sl_error *err);

/* Make pending snapshot `id` ready: record its total size and its layer's
 * size (both >= 0) and set created_at to now. `out`, when not NULL,
 * receives the row. Fails with EINVAL, ENOENT (no such pending snapshot:
 * never begun, deleted meanwhile, or already committed). */
int sl_catalog_snapshot_commit(sl_catalog *cat, const char *id, int64_t size_bytes,
                               int64_t layer_size_bytes, sl_snapshot *out, sl_error *err);

/* Fill `out` with ready snapshot `id`. Fails with EINVAL or ENOENT. */
int sl_catalog_snapshot_get(sl_catalog *cat, const char *id, sl_snapshot *out,
                            sl_error *err);

/* Find one ready snapshot by reference: an id ("sn-..."), "name:tag", or
 * "name" (the newest snapshot with that name). Fails with EINVAL for a
 * malformed reference and ENOENT ("snapshot not found: name:tag"). */
int sl_catalog_snapshot_resolve(sl_catalog *cat, const char *ref, sl_snapshot *out,
                                sl_error *err);

/* One layer row. */
typedef struct sl_layer {
  char id[SL_ID_SIZE];
  char parent_id[SL_ID_SIZE]; /* the layer below it, or "" */
  char *path;
  int64_t size_bytes;
  int64_t created_at;
  sl_layer_owner owner;
  char owner_id[SL_ID_SIZE];  /* the snapshot or template build that made it */
} sl_layer;

typedef struct sl_layer_list {
  sl_layer *items;
  size_t count;
} sl_layer_list;

void sl_layer_clear(sl_layer *layer);
void sl_layer_list_free(sl_layer_list *list);

/* Delete snapshot `id`, pending or ready, then every layer that this left
 * unused (its own layer unless a fork still mounts it or a later snapshot
 * stacks on it, and parents that became unused in turn). The deleted
 * layers are appended to `removed` (may be NULL) so that the caller
 * removes their folders; the rows are gone once this returns. Fails with
 * EINVAL or ENOENT. */
int sl_catalog_snapshot_delete(sl_catalog *cat, const char *id, sl_layer_list *removed,
                               sl_error *err);

/* Fill `out` with the ids of up to `limit` (1..1000) ready snapshots whose
 * expires_at is set and <= `now_ms`, oldest expiry first. */
int sl_catalog_snapshot_expired(sl_catalog *cat, int64_t now_ms, int limit, sl_id_list *out,
                                sl_error *err);

/* Fill `out` with the ids of up to `limit` (1..1000) pending snapshots
 * begun before `started_before_ms`, oldest first: snapshots whose process
 * may have died before commit. The caller decides (for example from the
 * sandbox's op.lock) which to end with sl_catalog_snapshot_delete. */
int sl_catalog_snapshot_pending(sl_catalog *cat, int64_t started_before_ms, int limit,
                                sl_id_list *out, sl_error *err);

typedef struct sl_snapshot_query {
  const char *ref;        /* NULL, or an id, "name" or "name:tag" */
  const char *sandbox_id; /* NULL, or only snapshots taken of this sandbox */
  const char *label;      /* NULL, or "key=value": only snapshots with it */
  int limit;              /* 1..SL_LIST_MAX_LIMIT */
  const char *cursor;     /* NULL for the first page, else a page's next_cursor */
} sl_snapshot_query;

#define SL_SNAPSHOT_QUERY_INIT {NULL, NULL, NULL, SL_LIST_DEFAULT_LIMIT, NULL}

typedef struct sl_snapshot_page {
  sl_snapshot *items;
  size_t count;
  bool has_next;
  char next_cursor[SL_CURSOR_SIZE]; /* "" when !has_next */
} sl_snapshot_page;

void sl_snapshot_page_free(sl_snapshot_page *page);

/* Fill `page` with up to `limit` ready snapshots matching every filter
 * given, newest first. A reference or sandbox that matches nothing gives
 * an empty page, not ENOENT. Fails with EINVAL for a malformed id,
 * reference or label, a limit outside 1..1000, or a bad cursor.
 * NOTE: a page walks one index (label, else sandbox or name) and checks
 * the other filters row by row. A label combined with a sandbox or name
 * that matches few of that label's rows therefore reads up to all of them. */
int sl_catalog_snapshot_list(sl_catalog *cat, const sl_snapshot_query *query,
                             sl_snapshot_page *page, sl_error *err);

/* ------------------------------------------------------------------ */
/* Layers.                                                             */

/* Counts of what refers to a layer. A layer is in use while any count is
 * not zero. Layers below a base layer are kept by the parent chain. */
typedef struct sl_layer_usage {
  int64_t snapshots;      /* snapshots (pending or ready) that own it */
  int64_t templates;      /* template builds that list it */
  int64_t child_layers;   /* layers whose parent it is */
  int64_t live_sandboxes; /* sandboxes, not dead, that mount it as base layer */
} sl_layer_usage;

/* True when any count in `usage` is not zero. */
bool sl_layer_usage_in_use(const sl_layer_usage *usage);

/* Fill `out` with layer `id`. Fails with EINVAL or ENOENT. */
int sl_catalog_layer_get(sl_catalog *cat, const char *id, sl_layer *out, sl_error *err);

/* Fill `out` with layer `id` and its ancestors, top first: the lower
 * layers of an overlay mount in order. Fails with EINVAL or ENOENT. */
int sl_catalog_layer_stack(sl_catalog *cat, const char *id, sl_layer_list *out,
                           sl_error *err);

/* Count what uses layer `id` (see sl_layer_usage). Fails with EINVAL or
 * ENOENT. */
int sl_catalog_layer_usage(sl_catalog *cat, const char *id, sl_layer_usage *out,
                           sl_error *err);

/* Delete every layer row that is not in use, repeating until parents that
 * became unused are gone too, and append the deleted layers to `removed`
 * (may be NULL) so the caller removes their folders. */
int sl_catalog_layer_collect(sl_catalog *cat, sl_layer_list *removed, sl_error *err);

/* ------------------------------------------------------------------ */
/* Templates.                                                          */

/* A template build is a row in state "building" that gains layers one by
 * one. Finishing it makes it the "ready" template of its name and replaces
 * the previous build of that name. Sandboxes and snapshots made from the
 * previous build keep its layers through their base layers. */
typedef struct sl_template {
  char id[SL_ID_SIZE];
  char name[SL_NAME_SIZE];
  char spec_hash[SL_HASH_SIZE];
  sl_template_status status;
  int64_t created_at;
  int64_t built_at;          /* 0 while building */
  size_t layer_count;
  char (*layer_ids)[SL_ID_SIZE]; /* bottom first */
} sl_template;

void sl_template_clear(sl_template *tpl);

typedef struct sl_template_list {
  sl_template *items;
  size_t count;
} sl_template_list;

void sl_template_list_free(sl_template_list *list);

/* Start build `id` (a new tp- id) of template `name` with `spec_hash`
 * (1..128 hex digits). Fails with EINVAL, EEXIST (id taken) or EBUSY
 * (another build of this name is in progress; sl_catalog_template_delete
 * ends a build whose process died). */
int sl_catalog_template_begin(sl_catalog *cat, const char *id, const char *name,
                              const char *spec_hash, sl_error *err);

/* Append new layer `layer_id` at `layer_path` (absolute) of `size_bytes`
 * (>= 0) to build `template_id`. Its parent is the build's previous layer.
 * Fails with EINVAL, ENOENT (no such build in progress) or EEXIST (layer
 * id taken). */
int sl_catalog_template_add_layer(sl_catalog *cat, const char *template_id,
                                  const char *layer_id, const char *layer_path,
                                  int64_t size_bytes, sl_error *err);

/* Make build `template_id` the ready template of its name, replacing the
 * previous one. Layers of the previous build that nothing uses any more
 * stay until sl_catalog_layer_collect(). A build needs at least one layer
 * (EINVAL). `out`, when not NULL, receives the template. Fails with
 * EINVAL or ENOENT (no such build in progress). */
int sl_catalog_template_finish(sl_catalog *cat, const char *template_id, sl_template *out,
                               sl_error *err);

/* Delete build `template_id`, building (an abandoned build) or ready (the
 * template of its name is then gone), and the layers this left unused,
 * appended to `removed` (may be NULL). Fails with EINVAL or ENOENT. */
int sl_catalog_template_delete(sl_catalog *cat, const char *template_id,
                              sl_layer_list *removed, sl_error *err);

/* Fill `out` with the ready template named `name`. Fails with EINVAL or
 * ENOENT ("template not found: name"). */
int sl_catalog_template_get(sl_catalog *cat, const char *name, sl_template *out,
                            sl_error *err);

/* Fill `out` with every ready template, by name. */
int sl_catalog_template_list(sl_catalog *cat, sl_template_list *out, sl_error *err);

#endif
