/* Templates: the root file systems sandboxes start from.
 *
 * A template spec lists what goes into a Debian root file system built by
 * mmdebstrap: suite, mirror, variant, extra packages and shell commands run
 * in the finished root (chroot) before it is sealed. The digest of the
 * spec's canonical text keys a machine-wide cache
 * ($SANDLOT_TEMPLATE_CACHE, default /var/cache/sandlot), so each spec is
 * built once per machine. A store imports the built root as a read-only
 * layer, with hardlinks when the cache and the store share a file system
 * and with reflinks or a copy otherwise. */
#ifndef SANDLOT_TEMPLATE_H
#define SANDLOT_TEMPLATE_H

#include <stddef.h>

#include "error.h"
#include "strv.h"
#include "run.h"
#include "sha256.h"

#define SL_TEMPLATE_DEFAULT "base"
#define SL_TEMPLATE_CACHE_DEFAULT "/var/cache/sandlot"
#define SL_LAYER_ID_MAX 16 /* "ly-" + 12 hex digits + NUL */

typedef struct sl_template_spec {
  const char *name;             /* "base" */
  const char *suite;            /* Debian suite: "bookworm" */
  const char *mirror;           /* "http://deb.debian.org/debian" */
  const char *variant;          /* mmdebstrap variant: "minbase" */
  const char *const *packages;  /* extra packages, NULL-terminated or NULL */
  const char *const *commands;  /* sh commands run chrooted in the new root,
                                   in order, NULL-terminated or NULL */
} sl_template_spec;

/* A template made ready in a store. */
typedef struct sl_template_layer {
  char digest[SL_SHA256_HEX_LEN + 1]; /* of the spec's canonical text */
  char layer_id[SL_LAYER_ID_MAX];     /* "ly-" + first 12 digest digits */
  char path[4096];                    /* <home>/layers/<layer_id> */
} sl_template_layer;

/* Look up a built-in template by name; NULL when there is none. */
const sl_template_spec *sl_template_builtin(const char *name);

/* Write the canonical text of `spec` to `buf`: one "key=value" line per
 * field in a fixed order, packages and commands one per line. The name is
 * left out, so two names for one content share a cache entry. Fails with
 * EINVAL when a field is missing or contains a newline, with ENOSPC when
 * `buf` is too small. */
int sl_template_spec_text(const sl_template_spec *spec, char *buf, size_t len, sl_error *err);

int sl_template_digest(const sl_template_spec *spec, char hex[SL_SHA256_HEX_LEN + 1],
                       sl_error *err);

/* Build the mmdebstrap command line that creates `rootfs` from `spec`.
 * Returns a heap-allocated, NULL-terminated argv (free it with
 * sl_strv_free), or NULL with `err` set. */
char **sl_template_mmdebstrap_argv(const sl_template_spec *spec, const char *rootfs,
                                   sl_error *err);

/* The machine-wide cache directory ($SANDLOT_TEMPLATE_CACHE or the
 * default). */
const char *sl_template_cache_dir(void);

/* Build the root of `spec` into the cache with mmdebstrap, under a lock,
 * unless the cache has it. A build takes minutes, and each output line
 * goes to `progress` (may be NULL). Writes the cached root's path. */
int sl_template_ensure_cached(const sl_template_spec *spec, sl_line_fn progress,
                              void *data, char *rootfs, size_t len, sl_error *err);

/* Make `spec`'s root a layer of the store at `home`: build or reuse the
 * cached root, then import it as <home>/layers/<layer_id> unless that
 * layer exists. Safe against concurrent callers. */
int sl_template_prepare(const char *home, const sl_template_spec *spec, sl_line_fn progress,
                        void *data, sl_template_layer *out, sl_error *err);

#endif
