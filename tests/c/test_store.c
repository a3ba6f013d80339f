#include <errno.h>
#include <sys/stat.h>

#include "test.h"
#include "catalog_fixture.h"

static void root_prefers_sandlot_home(void) {
  char root[PATH_MAX];
  sl_error err = {0};
  CHECK_OK(sl_store_pick_root(1000, "/srv/sl//", "/x", "/home/u", root, sizeof root, &err), &err);
  CHECK_STR(root, "/srv/sl");
  CHECK_OK(sl_store_pick_root(0, "/srv/sl", NULL, NULL, root, sizeof root, &err), &err);
  CHECK_STR(root, "/srv/sl");
}

static void root_defaults_by_user(void) {
  char root[PATH_MAX];
  sl_error err = {0};
  CHECK_OK(sl_store_pick_root(0, NULL, "/x", "/root", root, sizeof root, &err), &err);
  CHECK_STR(root, "/var/lib/sandlot");
  CHECK_OK(sl_store_pick_root(0, "", NULL, NULL, root, sizeof root, &err), &err);
  CHECK_STR(root, "/var/lib/sandlot");
  CHECK_OK(sl_store_pick_root(1000, NULL, "/data/xdg", "/home/u", root, sizeof root, &err), &err);
  CHECK_STR(root, "/data/xdg/sandlot");
  CHECK_OK(sl_store_pick_root(1000, NULL, "relative/xdg", "/home/u", root, sizeof root, &err),
           &err);
  CHECK_STR(root, "/home/u/.local/share/sandlot");
  CHECK_OK(sl_store_pick_root(1000, NULL, NULL, "/home/u/", root, sizeof root, &err), &err);
  CHECK_STR(root, "/home/u/.local/share/sandlot");
}

static void root_rejects_bad_input(void) {
  char root[PATH_MAX];
  sl_error err = {0};
  CHECK_INT(sl_store_pick_root(0, "relative", NULL, NULL, root, sizeof root, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "\"relative\"") != NULL);
  CHECK_INT(sl_store_pick_root(1000, NULL, NULL, NULL, root, sizeof root, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "SANDLOT_HOME") != NULL);
  CHECK_INT(sl_store_pick_root(1000, NULL, NULL, "home", root, sizeof root, &err), ==, -EINVAL);

  char long_home[PATH_MAX];
  memset(long_home, 'a', sizeof long_home - 1);
  long_home[0] = '/';
  long_home[PATH_MAX - 200] = '\0';
  CHECK_INT(sl_store_pick_root(0, long_home, NULL, NULL, root, sizeof root, &err), ==,
            -ENAMETOOLONG);
  CHECK_INT(sl_store_pick_root(0, "/ok", NULL, NULL, root, 3, &err), ==, -ENAMETOOLONG);
  CHECK_INT(sl_store_pick_root(0, "/ok", NULL, NULL, NULL, 0, &err), ==, -EINVAL);
}

static void resolve_reads_environment(void) {
  char root[PATH_MAX];
  sl_error err = {0};
  setenv("SANDLOT_HOME", "/tmp/sandlot-env-check", 1);
  CHECK_OK(sl_store_resolve_root(root, sizeof root, &err), &err);
  CHECK_STR(root, "/tmp/sandlot-env-check");
  unsetenv("SANDLOT_HOME");
}

static void ids_have_prefix_and_hex(void) {
  sl_error err = {0};
  const sl_id_kind kinds[] = {SL_ID_SANDBOX, SL_ID_SNAPSHOT, SL_ID_LAYER, SL_ID_TEMPLATE};
  const char *prefixes[] = {"sb-", "sn-", "ly-", "tp-"};
  for (int k = 0; k < 4; k++) {
    char a[SL_ID_SIZE], b[SL_ID_SIZE];
    CHECK_OK(sl_id_new(kinds[k], a, &err), &err);
    CHECK_OK(sl_id_new(kinds[k], b, &err), &err);
    CHECK_INT(strlen(a), ==, SL_ID_LEN);
    CHECK(strncmp(a, prefixes[k], 3) == 0);
    CHECK(strcmp(a, b) != 0);
    CHECK_OK(sl_id_validate(kinds[k], a, &err), &err);
    CHECK_INT(sl_id_kind_of(a), ==, kinds[k]);
  }
  char id[SL_ID_SIZE];
  CHECK_INT(sl_id_new((sl_id_kind)9, id, &err), ==, -EINVAL);
}

static void id_validation_rejects_escapes(void) {
  sl_error err = {0};
  const char *bad[] = {NULL,
                       "",
                       "sn-",
                       "sn-0123456789a",
                       "sn-0123456789abc",
                       "sn-0123456789AB",
                       "sb-0123456789ab",
                       "sn-../../etc/pw",
                       "sn-0123/56789ab",
                       "../sn-0123456789",
                       "sn-0123456789a\n",
                       "sn-01234 6789ab",
                       "sn-0123456789ag"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    sl_error_clear(&err);
    CHECK_INT(sl_id_validate(SL_ID_SNAPSHOT, bad[i], &err), ==, -EINVAL);
    CHECK(strstr(err.msg, "invalid snapshot id") != NULL);
  }
  CHECK_INT(sl_id_validate(SL_ID_SNAPSHOT, "sn-../../etc/pw", &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "\"sn-../../etc/pw\"") != NULL);
  CHECK_OK(sl_id_validate(SL_ID_SNAPSHOT, "sn-0123456789ab", &err), &err);
  CHECK_INT(sl_id_kind_of("xx-0123456789ab"), ==, -1);
  CHECK_INT(sl_id_kind_of(NULL), ==, -1);
}

static void names_are_checked(void) {
  sl_error err = {0};
  CHECK_OK(sl_name_validate("snapshot name", "nightly", &err), &err);
  CHECK_OK(sl_name_validate("snapshot name", "v1.2_rc-3", &err), &err);
  const char *bad[] = {NULL, "", ".", "..", "-x", "a/b", "a:b", "a b", "sn-x", "sb-build",
                       "tp-1", "ly-a", "caf\xc3\xa9"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    sl_error_clear(&err);
    CHECK_INT(sl_name_validate("snapshot name", bad[i], &err), ==, -EINVAL);
    CHECK(strstr(err.msg, "invalid snapshot name") != NULL);
  }
  char long_name[SL_NAME_MAX + 2];
  memset(long_name, 'a', sizeof long_name - 1);
  long_name[SL_NAME_MAX + 1] = '\0';
  CHECK_INT(sl_name_validate("snapshot name", long_name, &err), ==, -EINVAL);
  long_name[SL_NAME_MAX] = '\0';
  CHECK_OK(sl_name_validate("snapshot name", long_name, &err), &err);
}

static void quote_escapes_and_cuts(void) {
  char buf[SL_QUOTE_SIZE];
  CHECK_STR(sl_quote("a\nb\"", buf, sizeof buf), "\"a\\x0ab\\x22\"");
  CHECK_STR(sl_quote(NULL, buf, sizeof buf), "(null)");
  char long_value[200];
  memset(long_value, 'x', sizeof long_value - 1);
  long_value[199] = '\0';
  sl_quote(long_value, buf, sizeof buf);
  CHECK(strlen(buf) == 64 + 5);
  CHECK(strcmp(buf + strlen(buf) - 4, "\"...") == 0);
  char tiny[4] = "zzz";
  CHECK_STR(sl_quote("abc", tiny, sizeof tiny), "");
}

static void open_creates_private_tree(void) {
  char dir[PATH_MAX], root[PATH_MAX + 32];
  sl_error err = {0};
  CHECK(fixture_make_dir(dir) == 0);
  snprintf(root, sizeof root, "%s/a/b/store/", dir);
  sl_store store;
  int rc = sl_store_open(&store, root, &err);
  if (rc < 0) fprintf(stderr, "%s\n", err.msg);
  CHECK_INT(rc, ==, 0);
  CHECK(strstr(store.root, "/a/b/store") != NULL);
  CHECK(store.root[strlen(store.root) - 1] != '/');

  const char *folders[] = {"", "/sandboxes", "/snapshots", "/layers", "/templates", "/vm"};
  for (size_t i = 0; i < sizeof folders / sizeof folders[0]; i++) {
    char path[PATH_MAX + 64];
    struct stat st;
    snprintf(path, sizeof path, "%s%s", store.root, folders[i]);
    CHECK_INT(lstat(path, &st), ==, 0);
    CHECK(S_ISDIR(st.st_mode));
    CHECK_INT(st.st_mode & 0777, ==, 0700);
  }
  CHECK_OK(sl_store_open(&store, root, &err), &err);
  fixture_remove_dir(dir);
}

static void open_rejects_unsafe_folders(void) {
  char dir[PATH_MAX], root[PATH_MAX + 32], path[PATH_MAX + 64];
  sl_error err = {0};
  sl_store store;
  CHECK(fixture_make_dir(dir) == 0);
  snprintf(root, sizeof root, "%s/store", dir);
  CHECK_OK(sl_store_open(&store, root, &err), &err);

  CHECK_INT(chmod(root, 0777), ==, 0);
  CHECK_INT(sl_store_open(&store, root, &err), ==, -EPERM);
  CHECK(strstr(err.msg, "writable by group or others") != NULL);
  CHECK_INT(chmod(root, 0700), ==, 0);

  snprintf(path, sizeof path, "%s/layers", root);
  CHECK_INT(rmdir(path), ==, 0);
  CHECK_INT(symlink("/tmp", path), ==, 0);
  CHECK_INT(sl_store_open(&store, root, &err), ==, -EPERM);
  CHECK(strstr(err.msg, "not a plain directory") != NULL);
  CHECK_INT(unlink(path), ==, 0);

  /* Only root can give a folder to another user. */
  snprintf(path, sizeof path, "%s/snapshots", root);
  if (geteuid() == 0) {
    CHECK_INT(chown(path, 12345, 12345), ==, 0);
    CHECK_INT(sl_store_open(&store, root, &err), ==, -EPERM);
    CHECK(strstr(err.msg, "owned by uid 12345") != NULL);
  }

  CHECK_INT(sl_store_open(&store, "relative/store", &err), ==, -EINVAL);
  CHECK_INT(sl_store_open(&store, "", &err), ==, -EINVAL);
  CHECK_INT(sl_store_open(NULL, root, &err), ==, -EINVAL);
  fixture_remove_dir(dir);
}

static void paths_validate_keys(void) {
  sl_store store;
  snprintf(store.root, sizeof store.root, "/s");
  char path[PATH_MAX];
  sl_error err = {0};
  CHECK_OK(sl_store_sandbox_path(&store, "sb-0123456789ab", NULL, path, sizeof path, &err), &err);
  CHECK_STR(path, "/s/sandboxes/sb-0123456789ab");
  CHECK_OK(sl_store_sandbox_path(&store, "sb-0123456789ab", "upper/x", path, sizeof path, &err),
           &err);
  CHECK_STR(path, "/s/sandboxes/sb-0123456789ab/upper/x");
  CHECK_OK(sl_store_snapshot_path(&store, "sn-0123456789ab", "img", path, sizeof path, &err), &err);
  CHECK_STR(path, "/s/snapshots/sn-0123456789ab/img");
  CHECK_OK(sl_store_layer_path(&store, "ly-0123456789ab", NULL, path, sizeof path, &err), &err);
  CHECK_STR(path, "/s/layers/ly-0123456789ab");
  CHECK_OK(sl_store_template_path(&store, "base", "log", path, sizeof path, &err), &err);
  CHECK_STR(path, "/s/templates/base/log");
  CHECK_OK(sl_store_catalog_path(&store, path, sizeof path, &err), &err);
  CHECK_STR(path, "/s/catalog.db");

  CHECK_INT(sl_store_sandbox_path(&store, "sn-0123456789ab", NULL, path, sizeof path, &err), ==,
            -EINVAL);
  CHECK_INT(sl_store_sandbox_path(&store, "../../etc", NULL, path, sizeof path, &err), ==,
            -EINVAL);
  CHECK_INT(sl_store_template_path(&store, "..", NULL, path, sizeof path, &err), ==, -EINVAL);
  const char *bad_subs[] = {"", "/etc", "..", "a/../b", "a//b", "./a", "a/", "a/."};
  for (size_t i = 0; i < sizeof bad_subs / sizeof bad_subs[0]; i++) {
    sl_error_clear(&err);
    CHECK_INT(sl_store_layer_path(&store, "ly-0123456789ab", bad_subs[i], path, sizeof path,
                                  &err), ==, -EINVAL);
    CHECK(strstr(err.msg, "invalid path inside the store") != NULL);
  }
  CHECK_INT(sl_store_layer_path(&store, "ly-0123456789ab", NULL, path, 10, &err), ==,
            -ENAMETOOLONG);
  CHECK_INT(sl_store_path(&store, (sl_store_area)7, "x", NULL, path, sizeof path, &err), ==,
            -EINVAL);
  CHECK_INT(sl_store_path(NULL, SL_AREA_LAYERS, "ly-0123456789ab", NULL, path, sizeof path,
                          &err), ==, -EINVAL);
}

static void create_entry_is_exclusive(void) {
  char dir[PATH_MAX], root[PATH_MAX + 32], path[PATH_MAX];
  sl_error err = {0};
  sl_store store;
  CHECK(fixture_make_dir(dir) == 0);
  snprintf(root, sizeof root, "%s/store", dir);
  CHECK_OK(sl_store_open(&store, root, &err), &err);

  CHECK_OK(sl_store_create_entry(&store, SL_AREA_SANDBOXES, "sb-0123456789ab", path,
                                 sizeof path, &err), &err);
  struct stat st;
  CHECK_INT(stat(path, &st), ==, 0);
  CHECK_INT(st.st_mode & 0777, ==, 0700);
  CHECK_INT(sl_store_create_entry(&store, SL_AREA_SANDBOXES, "sb-0123456789ab", NULL, 0, &err),
            ==, -EEXIST);
  CHECK_INT(sl_store_create_entry(&store, SL_AREA_SANDBOXES, "sb-../x", NULL, 0, &err), ==,
            -EINVAL);
  fixture_remove_dir(dir);
}

int main(void) {
  RUN(root_prefers_sandlot_home);
  RUN(root_defaults_by_user);
  RUN(root_rejects_bad_input);
  RUN(resolve_reads_environment);
  RUN(ids_have_prefix_and_hex);
  RUN(id_validation_rejects_escapes);
  RUN(names_are_checked);
  RUN(quote_escapes_and_cuts);
  RUN(open_creates_private_tree);
  RUN(open_rejects_unsafe_folders);
  RUN(paths_validate_keys);
  RUN(create_entry_is_exclusive);
  TEST_EXIT();
}
