#include <errno.h>

#include "template.h"
#include "test.h"

static void builtin_base_exists(void) {
  const sl_template_spec *base = sl_template_builtin("base");
  CHECK(base != NULL);
  CHECK_STR(base->suite, "bookworm");
  CHECK_STR(base->variant, "minbase");
  CHECK_STR(base->packages[0], "python3");
  CHECK(sl_template_builtin("nope") == NULL);
  CHECK(sl_template_builtin(NULL) == NULL);
}

static void spec_text_is_canonical(void) {
  const char *const packages[] = {"python3", "curl", NULL};
  const char *const commands[] = {"echo hi > /etc/motd", NULL};
  sl_template_spec spec = {"t", "bookworm", "http://deb.debian.org/debian", "minbase", packages,
                           commands};
  char text[1024];
  sl_error err = {0};
  CHECK_OK(sl_template_spec_text(&spec, text, sizeof text, &err), &err);
  CHECK_STR(text,
            "format=1\nsuite=bookworm\nmirror=http://deb.debian.org/debian\nvariant=minbase\n"
            "package=python3\npackage=curl\ncommand=echo hi > /etc/motd\n");
}

static void digest_ignores_name(void) {
  const char *const packages[] = {"python3", NULL};
  sl_template_spec a = {"a", "bookworm", "http://m", "minbase", packages, NULL};
  sl_template_spec b = a;
  b.name = "b";
  char ha[SL_SHA256_HEX_LEN + 1], hb[SL_SHA256_HEX_LEN + 1];
  sl_error err = {0};
  CHECK_OK(sl_template_digest(&a, ha, &err), &err);
  CHECK_OK(sl_template_digest(&b, hb, &err), &err);
  CHECK_STR(ha, hb);
  b.suite = "trixie";
  CHECK_OK(sl_template_digest(&b, hb, &err), &err);
  CHECK(strcmp(ha, hb) != 0);
}

static void spec_rejects_missing_and_newlines(void) {
  sl_template_spec spec = {"t", NULL, "http://m", "minbase", NULL, NULL};
  char text[256];
  sl_error err = {0};
  CHECK_INT(sl_template_spec_text(&spec, text, sizeof text, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "suite") != NULL);
  const char *const packages[] = {"python3\nevil=1", NULL};
  sl_template_spec bad = {"t", "bookworm", "http://m", "minbase", packages, NULL};
  CHECK_INT(sl_template_spec_text(&bad, text, sizeof text, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "newline") != NULL);
  sl_template_spec ok = {"t", "bookworm", "http://m", "minbase", NULL, NULL};
  CHECK_INT(sl_template_spec_text(&ok, text, 8, &err), ==, -ENOSPC);
}

static void mmdebstrap_argv_matches_spec(void) {
  const char *const packages[] = {"python3", "curl", NULL};
  const char *const commands[] = {"echo 'it''s' > /x", NULL};
  sl_template_spec spec = {"t", "bookworm", "http://deb.debian.org/debian", "minbase", packages,
                           commands};
  sl_error err = {0};
  char **argv = sl_template_mmdebstrap_argv(&spec, "/c/rootfs", &err);
  CHECK(argv != NULL);
  const char *expected[] = {
      "mmdebstrap",
      "--mode=root",
      "--format=directory",
      "--variant=minbase",
      "--aptopt=Acquire::Retries \"3\"",
      "--include=python3,curl",
      "--customize-hook=chroot \"$1\" /bin/sh -ec 'echo '\\''it'\\'''\\''s'\\'' > /x'",
      "bookworm",
      "/c/rootfs",
      "http://deb.debian.org/debian",
      NULL,
  };
  size_t i = 0;
  for (; expected[i]; i++) {
    if (argv[i] == NULL || strcmp(argv[i], expected[i]) != 0)
      fprintf(stderr, "argv[%zu] = %s\n", i, argv[i] ? argv[i] : "(null)");
    CHECK(argv[i] != NULL);
    CHECK_STR(argv[i], expected[i]);
  }
  CHECK(argv[i] == NULL);
  sl_strv_free(argv);
}

static void cache_dir_follows_env(void) {
  unsetenv("SANDLOT_TEMPLATE_CACHE");
  CHECK_STR(sl_template_cache_dir(), "/var/cache/sandlot");
  setenv("SANDLOT_TEMPLATE_CACHE", "/tmp/x", 1);
  CHECK_STR(sl_template_cache_dir(), "/tmp/x");
  setenv("SANDLOT_TEMPLATE_CACHE", "", 1);
  CHECK_STR(sl_template_cache_dir(), "/var/cache/sandlot");
  unsetenv("SANDLOT_TEMPLATE_CACHE");
}

int main(void) {
  RUN(builtin_base_exists);
  RUN(spec_text_is_canonical);
  RUN(digest_ignores_name);
  RUN(spec_rejects_missing_and_newlines);
  RUN(mmdebstrap_argv_matches_spec);
  RUN(cache_dir_follows_env);
  TEST_EXIT();
}
