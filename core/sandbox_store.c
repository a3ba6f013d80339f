#include "sandbox_store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json_flat.h"
#include "proc_init.h"
#include "run.h"

struct sl_sbstore {
  sl_store store;
  sl_catalog *catalog;
};

int sl_sbstore_open(const char *home, sl_sbstore **out, sl_error *err) {
  sl_sbstore *s = calloc(1, sizeof *s);
  if (s == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  if (sl_store_open(&s->store, home, err) < 0 || sl_catalog_open_store(&s->store, &s->catalog, err) < 0) {
    free(s);
    return -err->code;
  }
  *out = s;
  return 0;
}

void sl_sbstore_close(sl_sbstore *s) {
  if (s == NULL) return;
  sl_catalog_close(s->catalog);
  free(s);
}

sl_catalog *sl_sbstore_catalog(sl_sbstore *s) { return s->catalog; }
const sl_store *sl_sbstore_store(const sl_sbstore *s) { return &s->store; }

int sl_sbstore_new_id(char id[SL_ID_SIZE], sl_error *err) {
  return sl_id_new(SL_ID_SANDBOX, id, err);
}

/* JSON columns */

static char *options_json(const sl_sandbox_info *info) {
  sl_json_buf b = {0};
  sl_json_add_integer(&b, "memory_bytes", (long long)info->memory_bytes);
  sl_json_add_integer(&b, "pids_max", info->pids_max);
  sl_json_add_integer(&b, "cpu_shares", info->cpu_shares);
  sl_json_add_number(&b, "cpus", info->cpus);
  sl_json_add_integer(&b, "auto_kill", info->auto_kill);
  const char *text = sl_json_close(&b);
  char *copy = text ? strdup(text) : NULL;
  sl_json_free(&b);
  return copy;
}

static void read_option(const char *key, const char *value, int is_string, void *data) {
  sl_sandbox_info *info = data;
  if (is_string) return;
  if (strcmp(key, "memory_bytes") == 0) info->memory_bytes = strtoull(value, NULL, 10);
  else if (strcmp(key, "pids_max") == 0) info->pids_max = strtoll(value, NULL, 10);
  else if (strcmp(key, "cpu_shares") == 0) info->cpu_shares = strtoll(value, NULL, 10);
  else if (strcmp(key, "cpus") == 0) info->cpus = strtod(value, NULL);
  else if (strcmp(key, "auto_kill") == 0) info->auto_kill = atoi(value);
}

/* Rows */

/* Fits a PATH_MAX buffer: the root is at most SL_STORE_ROOT_MAX bytes,
 * ids are validated and `sub` is a short constant. */
static void sandbox_path(const sl_sbstore *s, const char *id, const char *sub, char *buf,
                         size_t len) {
  snprintf(buf, len, "%.*s/sandboxes/%.*s%s%.32s", SL_STORE_ROOT_MAX, s->store.root,
           SL_SANDBOX_ID_MAX - 1, id, sub ? "/" : "", sub ? sub : "");
}

static void read_end_reason(const sl_sbstore *s, sl_sandbox_info *info) {
  char path[PATH_MAX];
  sandbox_path(s, info->id, "end_reason", path, sizeof path);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = read(fd, info->end_reason, sizeof info->end_reason - 1);
  close(fd);
  info->end_reason[n > 0 ? n : 0] = '\0';
}

static void from_row(const sl_sbstore *s, const sl_sandbox *row, sl_sandbox_info *info) {
  memset(info, 0, sizeof *info);
  snprintf(info->id, sizeof info->id, "%s", row->id);
  info->backend = row->backend;
  snprintf(info->template_name, sizeof info->template_name, "%s", row->template_name);
  snprintf(info->base_layer_id, sizeof info->base_layer_id, "%s", row->base_layer_id);
  snprintf(info->source_snapshot_id, sizeof info->source_snapshot_id, "%s",
           row->source_snapshot_id);
  info->state = row->state;
  info->created_at_ms = row->created_at;
  info->ended_at_ms = row->state == SL_SANDBOX_DEAD ? row->state_changed_at : 0;
  info->timeout_ms = row->timeout_ms;
  info->deadline_ms = row->deadline_at;
  info->on_timeout = row->on_timeout;
  sl_json_each(row->options, read_option, info);
  sl_json_to_lines(row->labels, info->labels, sizeof info->labels);
  sl_json_to_lines(row->cgroups, info->cgroups, sizeof info->cgroups);
  info->init_pid = (pid_t)row->init_pid;
  info->init_start = (uint64_t)row->init_start_time;
  info->monitor_pid = (pid_t)row->monitor_pid;
  info->exit_status = row->exit_status;
  info->exit_signal = row->exit_signal;
  sandbox_path(s, row->id, "root", info->root, sizeof info->root);
  if (row->state == SL_SANDBOX_RUNNING || row->state == SL_SANDBOX_FROZEN)
    sandbox_path(s, row->id, SL_AGENT_SOCKET_HOST, info->agent_socket, sizeof info->agent_socket);
  if (row->state == SL_SANDBOX_DEAD) read_end_reason(s, info);
}

static int not_found(const char *id, sl_error *err) {
  char quoted[SL_QUOTE_SIZE];
  return sl_error_set(err, ENOENT, "sandbox not found: %s", sl_quote(id, quoted, sizeof quoted));
}

int sl_sbstore_insert(sl_sbstore *s, sl_sandbox_info *info, sl_error *err) {
  char *options = options_json(info), *labels = sl_json_from_lines(info->labels);
  int rc = options && labels ? 0 : sl_error_set(err, ENOMEM, "out of memory");
  if (rc == 0) rc = sl_store_create_entry(&s->store, SL_AREA_SANDBOXES, info->id, NULL, 0, err);
  sl_sandbox row = {0};
  if (rc == 0) {
    sl_sandbox_spec spec = {
        .id = info->id,
        .backend = info->backend,
        .template_name = info->template_name[0] ? info->template_name : NULL,
        .source_snapshot_id = info->source_snapshot_id[0] ? info->source_snapshot_id : NULL,
        .timeout_ms = info->timeout_ms,
        .on_timeout = info->on_timeout,
        .options = options,
        .labels = labels,
    };
    rc = sl_catalog_sandbox_insert(s->catalog, &spec, &row, err);
    if (rc < 0) {
      char dir[PATH_MAX];
      sl_error ignored = {0};
      sandbox_path(s, info->id, NULL, dir, sizeof dir);
      sl_remove_tree(dir, &ignored);
    }
  }
  if (rc == 0) from_row(s, &row, info);
  sl_sandbox_clear(&row);
  free(options);
  free(labels);
  return rc;
}

int sl_sbstore_get(sl_sbstore *s, const char *id, sl_sandbox_info *out, sl_error *err) {
  if (id == NULL || sl_id_validate(SL_ID_SANDBOX, id, NULL) < 0) return not_found(id, err);
  sl_sandbox row = {0};
  int rc = sl_catalog_sandbox_get(s->catalog, id, &row, err);
  if (rc == 0) from_row(s, &row, out);
  sl_sandbox_clear(&row);
  return rc;
}

int sl_sbstore_list(sl_sbstore *s, sl_sandbox_info **out, size_t *count, sl_error *err) {
  sl_sandbox_info *items = NULL;
  size_t n = 0;
  char cursor[SL_CURSOR_SIZE] = "";
  int rc = 0;
  for (;;) {
    sl_sandbox_query query = {NULL, SL_LIST_MAX_LIMIT, cursor[0] ? cursor : NULL};
    sl_sandbox_page page = {0};
    rc = sl_catalog_sandbox_list(s->catalog, &query, &page, err);
    if (rc < 0) break;
    sl_sandbox_info *grown = realloc(items, (n + page.count + 1) * sizeof *items);
    if (grown == NULL) {
      sl_sandbox_page_free(&page);
      rc = sl_error_set(err, ENOMEM, "out of memory listing sandboxes");
      break;
    }
    items = grown;
    for (size_t i = 0; i < page.count; i++) from_row(s, &page.items[i], &items[n++]);
    int more = page.has_next;
    snprintf(cursor, sizeof cursor, "%s", page.next_cursor);
    sl_sandbox_page_free(&page);
    if (!more) break;
  }
  if (rc < 0) {
    free(items);
    return rc;
  }
  /* The catalog lists newest first. */
  for (size_t i = 0; i < n / 2; i++) {
    sl_sandbox_info t = items[i];
    items[i] = items[n - 1 - i];
    items[n - 1 - i] = t;
  }
  *out = items;
  *count = n;
  return 0;
}

int sl_sbstore_set_running(sl_sbstore *s, const char *id, pid_t init_pid, uint64_t init_start,
                           pid_t monitor_pid, const char *cgroups, sl_error *err) {
  char *json = sl_json_from_lines(cgroups);
  if (json == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  sl_sandbox_process proc = {init_pid, (int64_t)init_start, monitor_pid, json};
  int rc = sl_catalog_sandbox_set_running(s->catalog, id, &proc, err);
  free(json);
  return rc;
}

int sl_sbstore_set_state(sl_sbstore *s, const char *id, sl_sandbox_state state, sl_error *err) {
  return sl_catalog_sandbox_set_state(s->catalog, id, state, err);
}

int sl_sbstore_set_deadline(sl_sbstore *s, const char *id, int64_t timeout_ms,
                            int64_t deadline_ms, sl_on_timeout on_timeout, sl_error *err) {
  return sl_catalog_sandbox_set_timeout(s->catalog, id, timeout_ms, deadline_ms, on_timeout, err);
}

/* The reason goes in first: a reader that sees the row dead finds it. */
int sl_sbstore_set_ended(sl_sbstore *s, const char *id, int exit_status, int exit_signal,
                         const char *reason, sl_error *err) {
  char path[PATH_MAX];
  sandbox_path(s, id, "end_reason", path, sizeof path);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    ssize_t n = write(fd, reason, strlen(reason));
    close(fd);
    if (n < 0) return sl_error_errno(err, errno, "write %s", path);
  } else if (errno != EEXIST) {
    return sl_error_errno(err, errno, "create %s", path);
  }
  if (exit_status >= 0) exit_signal = 0;
  return sl_catalog_sandbox_set_exited(s->catalog, id, exit_status, exit_signal, err);
}

int sl_sbstore_delete(sl_sbstore *s, const char *id, sl_error *err) {
  int rc = sl_catalog_sandbox_set_state(s->catalog, id, SL_SANDBOX_DEAD, err);
  if (rc == 0 || err->code == ESRCH) rc = sl_catalog_sandbox_delete(s->catalog, id, err);
  char dir[PATH_MAX];
  sandbox_path(s, id, NULL, dir, sizeof dir);
  sl_error ignored = {0};
  sl_remove_tree(dir, &ignored);
  return rc;
}
