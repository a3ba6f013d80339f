/* The monitor config of a process sandbox, written by the creator to
 * sandboxes/<id>/config. Its lines are "key=value" with backslash and
 * newline escaped in values, and repeated keys (lower, env) form lists
 * in order. */
#ifndef SANDLOT_PROC_CONFIG_H
#define SANDLOT_PROC_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "proc_cgroup.h"
#include "catalog.h"

typedef struct sl_proc_config {
  char *id;
  char *home;
  char *root;          /* overlay mount point */
  char *upper, *work;  /* overlay upper and work dirs */
  char **lowers;       /* read-only layers, top first */
  size_t nlowers;
  char *hostname, *cwd;
  char **env;          /* "NAME=value" */
  size_t nenv;
  char *launch;        /* how PID 1 starts: "fresh" clones the agent, "fork"
                          restores `images` and runs the fork hooks, "resume"
                          restores `images` of a pause as they were */
  char *images;        /* CRIU images for "fork" and "resume" */
  char *on_fork;       /* "fork": command run by /bin/sh -c after the hooks */
  int resume;          /* this start resumes a paused sandbox: a failure
                          keeps its files and leaves it paused */
  sl_cgroup_limits limits;
  int64_t timeout_ms;  /* 0: none */
  sl_on_timeout on_timeout;
  int auto_kill;       /* watch the creator through the inherited pidfd */
} sl_proc_config;

/* Serialize into a heap string (free with free()); NULL on out of memory. */
char *sl_proc_config_format(const sl_proc_config *cfg);

/* Parse text from sl_proc_config_format(). EINVAL on a malformed line or
 * a missing required key (id, home, root, upper, work, lower). */
int sl_proc_config_parse(const char *text, sl_proc_config *out, sl_error *err);

void sl_proc_config_free(sl_proc_config *cfg);

int sl_proc_config_write(const char *path, const sl_proc_config *cfg, sl_error *err);
int sl_proc_config_read(const char *path, sl_proc_config *out, sl_error *err);

/* Append `value` to a NULL-terminated heap list. Returns 0 or -ENOMEM. */
int sl_strv_push(char ***list, size_t *count, const char *value);

#endif
