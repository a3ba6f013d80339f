#include "vm_monitor_config.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm_util.h"

static const char *const launch_names[] = {"boot", "fork", "resume"};

const char *sl_vm_launch_name(sl_vm_launch_mode mode) {
  return (unsigned)mode < sizeof launch_names / sizeof launch_names[0] ? launch_names[mode] : "?";
}

static int parse_launch(const char *name, sl_vm_launch_mode *out) {
  for (size_t i = 0; i < sizeof launch_names / sizeof launch_names[0]; i++)
    if (name != NULL && strcmp(name, launch_names[i]) == 0) {
      *out = (sl_vm_launch_mode)i;
      return 0;
    }
  return -1;
}

static int config_path(const char *dir, char *buf, size_t size, sl_error *err) {
  if (snprintf(buf, size, "%s/%s", dir, SL_VM_MONITOR_CONFIG) >= (int)size)
    return sl_error_set(err, ENAMETOOLONG, "path too long: %s/%s", dir, SL_VM_MONITOR_CONFIG);
  return 0;
}

int sl_vm_monitor_config_write(const char *dir, const sl_vm_monitor_config *cfg, sl_error *err) {
  char path[PATH_MAX];
  int rc = config_path(dir, path, sizeof path, err);
  if (rc < 0) return rc;
  json_t *env = json_array();
  for (char **e = cfg->env; env != NULL && e != NULL && *e != NULL; e++)
    json_array_append_new(env, json_string(*e));
  json_t *root = json_pack(
      "{s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:s, s:I, s:s, s:b, s:o, s:s}", "launch",
      sl_vm_launch_name(cfg->launch), "base_disk", cfg->base_disk, "agent", cfg->agent,
      "memory_mb", (int)cfg->memory_mb, "image_dir", cfg->image_dir, "image_disk",
      cfg->image_disk, "hostname", cfg->hostname, "on_fork", cfg->on_fork, "timeout_ms",
      (json_int_t)cfg->timeout_ms, "on_timeout", sl_on_timeout_name(cfg->on_timeout),
      "auto_kill", cfg->auto_kill, "env", env, "cwd", cfg->cwd);
  char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
  json_decref(root);
  if (text == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  rc = sl_write_file_atomic(path, text, strlen(text), 0600, err);
  free(text);
  return rc;
}

static int copy_string(json_t *root, const char *key, char *buf, size_t size, sl_error *err) {
  const char *value = json_string_value(json_object_get(root, key));
  if (value == NULL || strlen(value) >= size)
    return sl_error_set(err, EINVAL, "invalid %s in %s: missing, not a string or too long", key,
                        SL_VM_MONITOR_CONFIG);
  memcpy(buf, value, strlen(value) + 1);
  return 0;
}

static int read_strings(json_t *root, sl_vm_monitor_config *cfg, sl_error *err) {
  int rc = copy_string(root, "base_disk", cfg->base_disk, sizeof cfg->base_disk, err);
  if (rc == 0) rc = copy_string(root, "agent", cfg->agent, sizeof cfg->agent, err);
  if (rc == 0) rc = copy_string(root, "image_dir", cfg->image_dir, sizeof cfg->image_dir, err);
  if (rc == 0) rc = copy_string(root, "image_disk", cfg->image_disk, sizeof cfg->image_disk, err);
  if (rc == 0) rc = copy_string(root, "hostname", cfg->hostname, sizeof cfg->hostname, err);
  if (rc == 0) rc = copy_string(root, "on_fork", cfg->on_fork, sizeof cfg->on_fork, err);
  if (rc == 0) rc = copy_string(root, "cwd", cfg->cwd, sizeof cfg->cwd, err);
  return rc;
}

static int read_env(json_t *root, sl_vm_monitor_config *cfg, sl_error *err) {
  json_t *env = json_object_get(root, "env");
  if (!json_is_array(env)) return sl_error_set(err, EINVAL, "invalid env in %s", SL_VM_MONITOR_CONFIG);
  cfg->env = calloc(json_array_size(env) + 1, sizeof *cfg->env);
  if (cfg->env == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  for (size_t i = 0; i < json_array_size(env); i++) {
    const char *entry = json_string_value(json_array_get(env, i));
    if (entry == NULL) return sl_error_set(err, EINVAL, "invalid env in %s", SL_VM_MONITOR_CONFIG);
    if ((cfg->env[i] = strdup(entry)) == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  }
  return 0;
}

void sl_vm_monitor_config_free(sl_vm_monitor_config *cfg) {
  for (char **e = cfg->env; e != NULL && *e != NULL; e++) free(*e);
  free(cfg->env);
  cfg->env = NULL;
}

int sl_vm_monitor_config_read(const char *dir, sl_vm_monitor_config *cfg, sl_error *err) {
  memset(cfg, 0, sizeof *cfg);
  char path[PATH_MAX];
  int rc = config_path(dir, path, sizeof path, err);
  if (rc < 0) return rc;
  json_error_t jerr;
  json_t *root = json_load_file(path, 0, &jerr);
  if (root == NULL) return sl_error_set(err, EINVAL, "invalid %s: %s", path, jerr.text);
  rc = read_strings(root, cfg, err);
  if (rc == 0) rc = read_env(root, cfg, err);
  if (rc == 0 && parse_launch(json_string_value(json_object_get(root, "launch")), &cfg->launch) < 0)
    rc = sl_error_set(err, EINVAL, "invalid launch in %s", path);
  if (rc == 0)
    rc = sl_on_timeout_parse(json_string_value(json_object_get(root, "on_timeout")),
                             &cfg->on_timeout, err);
  cfg->memory_mb = (unsigned)json_integer_value(json_object_get(root, "memory_mb"));
  cfg->timeout_ms = json_integer_value(json_object_get(root, "timeout_ms"));
  cfg->auto_kill = json_is_true(json_object_get(root, "auto_kill"));
  json_decref(root);
  if (rc < 0) sl_vm_monitor_config_free(cfg);
  return rc;
}
