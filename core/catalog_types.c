/* Names of the catalog's enumerations, and release of result structs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"

static const char *const backend_names[] = {"process", "vm"};
static const char *const sandbox_state_names[] = {"creating", "running", "frozen", "paused",
                                                  "dead"};
static const char *const on_timeout_names[] = {"kill", "pause", "pause_fs"};
static const char *const snapshot_kind_names[] = {"full", "fs"};
static const char *const layer_owner_names[] = {"template", "snapshot"};
static const char *const template_status_names[] = {"building", "ready"};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char *name_of(const char *const *names, size_t count, int value) {
  return value >= 0 && (size_t)value < count ? names[value] : "invalid";
}

/* Find `name` in `names`; on failure the message lists every name. */
static int parse(const char *what, const char *const *names, size_t count, const char *name,
                 int *out, sl_error *err) {
  for (size_t i = 0; name != NULL && i < count; i++) {
    if (strcmp(names[i], name) == 0) {
      *out = (int)i;
      return 0;
    }
  }
  char accepted[128] = "";
  for (size_t i = 0; i < count; i++) {
    strcat(accepted, i > 0 ? ", " : "");
    strcat(accepted, names[i]);
  }
  char quoted[SL_QUOTE_SIZE];
  return sl_error_set(err, EINVAL, "invalid %s: %s (expected one of: %s)", what,
                      sl_quote(name, quoted, sizeof quoted), accepted);
}

const char *sl_backend_name(sl_backend backend) {
  return name_of(backend_names, COUNT(backend_names), (int)backend);
}

const char *sl_sandbox_state_name(sl_sandbox_state state) {
  return name_of(sandbox_state_names, COUNT(sandbox_state_names), (int)state);
}

const char *sl_on_timeout_name(sl_on_timeout action) {
  return name_of(on_timeout_names, COUNT(on_timeout_names), (int)action);
}

const char *sl_snapshot_kind_name(sl_snapshot_kind kind) {
  return name_of(snapshot_kind_names, COUNT(snapshot_kind_names), (int)kind);
}

const char *sl_layer_owner_name(sl_layer_owner owner) {
  return name_of(layer_owner_names, COUNT(layer_owner_names), (int)owner);
}

const char *sl_template_status_name(sl_template_status status) {
  return name_of(template_status_names, COUNT(template_status_names), (int)status);
}

int sl_backend_parse(const char *name, sl_backend *out, sl_error *err) {
  int value = 0;
  int rc = parse("backend", backend_names, COUNT(backend_names), name, &value, err);
  if (rc == 0) *out = (sl_backend)value;
  return rc;
}

int sl_sandbox_state_parse(const char *name, sl_sandbox_state *out, sl_error *err) {
  int value = 0;
  int rc = parse("sandbox state", sandbox_state_names, COUNT(sandbox_state_names), name,
                 &value, err);
  if (rc == 0) *out = (sl_sandbox_state)value;
  return rc;
}

int sl_on_timeout_parse(const char *name, sl_on_timeout *out, sl_error *err) {
  int value = 0;
  int rc = parse("timeout action", on_timeout_names, COUNT(on_timeout_names), name, &value,
                 err);
  if (rc == 0) *out = (sl_on_timeout)value;
  return rc;
}

int sl_snapshot_kind_parse(const char *name, sl_snapshot_kind *out, sl_error *err) {
  int value = 0;
  int rc = parse("snapshot kind", snapshot_kind_names, COUNT(snapshot_kind_names), name,
                 &value, err);
  if (rc == 0) *out = (sl_snapshot_kind)value;
  return rc;
}

void sl_sandbox_clear(sl_sandbox *sb) {
  if (sb == NULL) return;
  free(sb->cgroups);
  free(sb->options);
  free(sb->labels);
  memset(sb, 0, sizeof *sb);
}

void sl_sandbox_page_free(sl_sandbox_page *page) {
  if (page == NULL) return;
  for (size_t i = 0; i < page->count; i++) sl_sandbox_clear(&page->items[i]);
  free(page->items);
  memset(page, 0, sizeof *page);
}

void sl_snapshot_clear(sl_snapshot *sn) {
  if (sn == NULL) return;
  free(sn->labels);
  free(sn->image_dir);
  memset(sn, 0, sizeof *sn);
}

void sl_snapshot_page_free(sl_snapshot_page *page) {
  if (page == NULL) return;
  for (size_t i = 0; i < page->count; i++) sl_snapshot_clear(&page->items[i]);
  free(page->items);
  memset(page, 0, sizeof *page);
}

void sl_layer_clear(sl_layer *layer) {
  if (layer == NULL) return;
  free(layer->path);
  memset(layer, 0, sizeof *layer);
}

void sl_layer_list_free(sl_layer_list *list) {
  if (list == NULL) return;
  for (size_t i = 0; i < list->count; i++) sl_layer_clear(&list->items[i]);
  free(list->items);
  memset(list, 0, sizeof *list);
}

void sl_template_clear(sl_template *tpl) {
  if (tpl == NULL) return;
  free(tpl->layer_ids);
  memset(tpl, 0, sizeof *tpl);
}

void sl_template_list_free(sl_template_list *list) {
  if (list == NULL) return;
  for (size_t i = 0; i < list->count; i++) sl_template_clear(&list->items[i]);
  free(list->items);
  memset(list, 0, sizeof *list);
}

bool sl_layer_usage_in_use(const sl_layer_usage *usage) {
  return usage != NULL && (usage->snapshots != 0 || usage->templates != 0 ||
                           usage->child_layers != 0 || usage->live_sandboxes != 0);
}
