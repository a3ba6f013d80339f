#include "sandbox_types.h"

#include <errno.h>
#include <string.h>

static const char *const backend_names[] = {"process", "vm"};
static const char *const state_names[] = {"creating", "running", "frozen", "paused", "dead"};
static const char *const on_timeout_names[] = {"kill", "pause", "pause_fs"};

#define COUNT(a) ((int)(sizeof a / sizeof a[0]))

static const char *name_of(const char *const *names, int count, int value) {
  return value >= 0 && value < count ? names[value] : "invalid";
}

static int parse(const char *const *names, int count, const char *what, const char *name,
                 int *out, sl_error *err) {
  for (int i = 0; name && i < count; i++)
    if (strcmp(names[i], name) == 0) {
      *out = i;
      return 0;
    }
  return sl_error_set(err, EINVAL, "invalid %s: \"%s\"", what, name ? name : "(null)");
}

const char *sl_backend_name(sl_backend b) { return name_of(backend_names, COUNT(backend_names), b); }
const char *sl_sandbox_state_name(sl_sandbox_state s) {
  return name_of(state_names, COUNT(state_names), s);
}
const char *sl_on_timeout_name(sl_on_timeout a) {
  return name_of(on_timeout_names, COUNT(on_timeout_names), a);
}

int sl_backend_parse(const char *name, sl_backend *out, sl_error *err) {
  int v;
  int rc = parse(backend_names, COUNT(backend_names), "backend (process or vm)", name, &v, err);
  if (rc == 0) *out = (sl_backend)v;
  return rc;
}

int sl_sandbox_state_parse(const char *name, sl_sandbox_state *out, sl_error *err) {
  int v;
  int rc = parse(state_names, COUNT(state_names), "sandbox state", name, &v, err);
  if (rc == 0) *out = (sl_sandbox_state)v;
  return rc;
}

int sl_on_timeout_parse(const char *name, sl_on_timeout *out, sl_error *err) {
  int v;
  int rc = parse(on_timeout_names, COUNT(on_timeout_names), "on_timeout (kill, pause or pause_fs)",
                 name, &v, err);
  if (rc == 0) *out = (sl_on_timeout)v;
  return rc;
}
