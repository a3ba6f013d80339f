/* Unit tests of the CRIU argv builder: no root, no CRIU run. */
#include <errno.h>

#include "criu.h"
#include "error.h"
#include "test.h"

#define CRIU "/opt/criu/sbin/criu"

/* Index of `option` in argv, or -1. */
static int find_arg(const sl_argv *a, const char *option) {
  for (size_t i = 0; i < a->count; i++)
    if (strcmp(a->argv[i], option) == 0) return (int)i;
  return -1;
}

/* True when `option` is directly followed by `value`. */
static int has_pair(const sl_argv *a, const char *option, const char *value) {
  int i = find_arg(a, option);
  return i >= 0 && (size_t)i + 1 < a->count && strcmp(a->argv[i + 1], value) == 0;
}

static sl_criu_opts dump_opts(void) {
  return (sl_criu_opts){
      .command = SL_CRIU_DUMP,
      .images_dir = "/store/snapshots/sn-1/images",
      .work_dir = "/store/sandboxes/sb-1/log/op-1",
      .pid = 4242,
  };
}

static sl_criu_opts restore_opts(void) {
  return (sl_criu_opts){
      .command = SL_CRIU_RESTORE,
      .images_dir = "/store/snapshots/sn-1/images",
      .work_dir = "/store/sandboxes/sb-2/log/op-2",
  };
}

/* Build and expect EINVAL with `fragment` in the message. */
static int rejects(const sl_criu_opts *o, const char *fragment) {
  sl_error err = {0};
  sl_argv a;
  int rc = sl_criu_build_argv(o, CRIU, &a, &err);
  if (rc != -EINVAL || err.code != EINVAL || strstr(err.msg, fragment) == NULL) {
    fprintf(stderr, "  expected EINVAL containing \"%s\", got rc=%d msg=\"%s\"\n", fragment, rc,
            err.msg);
    if (rc == 0) sl_argv_free(&a);
    return 0;
  }
  return a.argv == NULL;
}

static void test_dump_minimal(void) {
  sl_criu_opts o = dump_opts();
  sl_error err = {0};
  sl_argv a;
  CHECK_OK(sl_criu_build_argv(&o, CRIU, &a, &err), &err);
  CHECK_STR(a.argv[0], CRIU);
  CHECK_STR(a.argv[1], "dump");
  CHECK(has_pair(&a, "-D", "/store/snapshots/sn-1/images"));
  CHECK(has_pair(&a, "-W", "/store/sandboxes/sb-1/log/op-1"));
  CHECK(has_pair(&a, "-o", "dump.log"));
  CHECK(has_pair(&a, "-t", "4242"));
  CHECK(a.argv[a.count] == NULL);
  CHECK_INT(find_arg(&a, "--leave-running"), ==, -1);
  CHECK_INT(find_arg(&a, "--network-lock"), ==, -1);
  sl_argv_free(&a);
  CHECK(a.argv == NULL);
}

static void test_dump_every_option(void) {
  sl_criu_opts o = dump_opts();
  o.log_name = "snapshot.log";
  o.log_level = 4;
  o.leave_running = true;
  o.freeze_cgroup = "/sys/fs/cgroup/freezer/sandlot/sb-1";
  o.network_lock = SL_CRIU_NETLOCK_SKIP;
  o.empty_net_ns = true;
  o.manage_cgroups = SL_CRIU_CGROUPS_SOFT;
  o.cgroup_roots[0] = "freezer:/sandlot/sb-2";
  o.cgroup_roots[1] = "memory:/sandlot/sb-2";
  o.file_locks = true;
  o.tcp_established = true;
  o.ghost_limit = 64ull << 20;
  o.freeze_timeout_s = 3;
  o.display_stats = true;
  o.action_script = "/usr/lib/sandlot/sandlot-criu-action";
  sl_error err = {0};
  sl_argv a;
  CHECK_OK(sl_criu_build_argv(&o, CRIU, &a, &err), &err);
  CHECK(has_pair(&a, "-o", "snapshot.log"));
  CHECK(find_arg(&a, "-v4") > 0);
  CHECK(find_arg(&a, "--leave-running") > 0);
  CHECK(has_pair(&a, "--freeze-cgroup", "/sys/fs/cgroup/freezer/sandlot/sb-1"));
  CHECK(has_pair(&a, "--network-lock", "skip"));
  CHECK(has_pair(&a, "--empty-ns", "net"));
  CHECK(find_arg(&a, "--manage-cgroups=soft") > 0);
  CHECK(has_pair(&a, "--cgroup-root", "freezer:/sandlot/sb-2"));
  int first = find_arg(&a, "--cgroup-root");
  CHECK_STR(a.argv[first + 2], "--cgroup-root");
  CHECK_STR(a.argv[first + 3], "memory:/sandlot/sb-2");
  CHECK(find_arg(&a, "--file-locks") > 0);
  CHECK(find_arg(&a, "--tcp-established") > 0);
  CHECK(find_arg(&a, "--ghost-limit=67108864") > 0);
  CHECK(find_arg(&a, "--timeout=3") > 0);
  CHECK(find_arg(&a, "--display-stats") > 0);
  CHECK(has_pair(&a, "--action-script", "/usr/lib/sandlot/sandlot-criu-action"));
  sl_argv_free(&a);
}

static void test_network_lock_methods(void) {
  static const struct {
    sl_criu_network_lock method;
    const char *name;
  } cases[] = {
      {SL_CRIU_NETLOCK_IPTABLES, "iptables"},
      {SL_CRIU_NETLOCK_NFTABLES, "nftables"},
      {SL_CRIU_NETLOCK_SKIP, "skip"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    sl_criu_opts o = dump_opts();
    o.network_lock = cases[i].method;
    sl_error err = {0};
    sl_argv a;
    CHECK_OK(sl_criu_build_argv(&o, CRIU, &a, &err), &err);
    CHECK(has_pair(&a, "--network-lock", cases[i].name));
    sl_argv_free(&a);
  }
  sl_criu_opts bad = dump_opts();
  bad.network_lock = (sl_criu_network_lock)17;
  CHECK(rejects(&bad, "--network-lock"));
}

static void test_cgroup_modes(void) {
  static const char *const names[] = {NULL,    "ignore", "none",  "props",
                                      "soft",  "full",   "strict"};
  for (int mode = SL_CRIU_CGROUPS_IGNORE; mode <= SL_CRIU_CGROUPS_STRICT; mode++) {
    sl_criu_opts o = restore_opts();
    o.manage_cgroups = (sl_criu_cgroups)mode;
    sl_error err = {0};
    sl_argv a;
    CHECK_OK(sl_criu_build_argv(&o, CRIU, &a, &err), &err);
    char expected[64];
    snprintf(expected, sizeof expected, "--manage-cgroups=%s", names[mode]);
    CHECK(find_arg(&a, expected) > 0);
    sl_argv_free(&a);
  }
  sl_criu_opts bad = restore_opts();
  bad.manage_cgroups = (sl_criu_cgroups)99;
  CHECK(rejects(&bad, "--manage-cgroups"));
}

static void test_restore_every_option(void) {
  sl_criu_opts o = restore_opts();
  o.root = "/store/sandboxes/sb-2/root";
  o.detach = true;
  o.pidfile = "/store/sandboxes/sb-2/log/op-2/pid";
  o.lazy_pages = true;
  o.empty_net_ns = true;
  o.manage_cgroups = SL_CRIU_CGROUPS_IGNORE;
  o.file_locks = true;
  o.tcp_established = true;
  o.action_script = "/usr/lib/sandlot/sandlot-criu-action";
  sl_error err = {0};
  sl_argv a;
  CHECK_OK(sl_criu_build_argv(&o, CRIU, &a, &err), &err);
  CHECK_STR(a.argv[1], "restore");
  CHECK(has_pair(&a, "-o", "restore.log"));
  CHECK(has_pair(&a, "--root", "/store/sandboxes/sb-2/root"));
  CHECK(find_arg(&a, "-d") > 0);
  CHECK(has_pair(&a, "--pidfile", "/store/sandboxes/sb-2/log/op-2/pid"));
  CHECK(find_arg(&a, "--lazy-pages") > 0);
  CHECK(has_pair(&a, "--empty-ns", "net"));
  CHECK(find_arg(&a, "--manage-cgroups=ignore") > 0);
  CHECK(find_arg(&a, "--file-locks") > 0);
  CHECK(find_arg(&a, "--tcp-established") > 0);
  CHECK(has_pair(&a, "--action-script", "/usr/lib/sandlot/sandlot-criu-action"));
  CHECK_INT(find_arg(&a, "-t"), ==, -1);
  sl_argv_free(&a);
}

static void test_external_resources(void) {
  sl_criu_opts d = dump_opts();
  d.external[0] = "net[4026532450]:sandlot-net";
  d.external[1] = "mnt[/dev]:dev";
  sl_error err = {0};
  sl_argv a;
  CHECK_OK(sl_criu_build_argv(&d, CRIU, &a, &err), &err);
  CHECK(has_pair(&a, "--external", "net[4026532450]:sandlot-net"));
  int first = find_arg(&a, "--external");
  CHECK_STR(a.argv[first + 2], "--external");
  CHECK_STR(a.argv[first + 3], "mnt[/dev]:dev");
  sl_argv_free(&a);

  sl_criu_opts r = restore_opts();
  r.inherit_fds[0] = "fd[200]:sandlot-net";
  r.external[0] = "mnt[dev]:/store/sandboxes/sb-2/dev";
  CHECK_OK(sl_criu_build_argv(&r, CRIU, &a, &err), &err);
  CHECK(has_pair(&a, "--inherit-fd", "fd[200]:sandlot-net"));
  CHECK(has_pair(&a, "--external", "mnt[dev]:/store/sandboxes/sb-2/dev"));
  sl_argv_free(&a);
}

static void test_external_syntax_rejected(void) {
  static const char *const bad_external[] = {"net", "[1]:x", "net[]:x", "net[1]:", "net[1]x",
                                             "net[1"};
  for (size_t i = 0; i < sizeof bad_external / sizeof *bad_external; i++) {
    sl_criu_opts o = dump_opts();
    o.external[0] = bad_external[i];
    CHECK(rejects(&o, "--external"));
  }
  static const char *const bad_inherit[] = {"fd[]:k", "fd[x]:k", "fd[3]", "fd[3]:", "pipe[3]:k",
                                            "fd[3]:k\n"};
  for (size_t i = 0; i < sizeof bad_inherit / sizeof *bad_inherit; i++) {
    sl_criu_opts o = restore_opts();
    o.inherit_fds[0] = bad_inherit[i];
    CHECK(rejects(&o, "--inherit-fd"));
  }
  sl_criu_opts d = dump_opts();
  d.inherit_fds[0] = "fd[3]:k";
  CHECK(rejects(&d, "--inherit-fd"));
  sl_criu_opts c = {.command = SL_CRIU_CHECK, .external = {"net[1]:k"}};
  CHECK(rejects(&c, "--external"));
  sl_criu_opts l = {.command = SL_CRIU_LAZY_PAGES, .images_dir = "/i", .work_dir = "/w",
                    .inherit_fds = {"fd[3]:k"}};
  CHECK(rejects(&l, "--inherit-fd"));
}

static void test_lazy_pages_daemon(void) {
  sl_criu_opts o = {
      .command = SL_CRIU_LAZY_PAGES,
      .images_dir = "/store/snapshots/sn-1/images",
      .work_dir = "/store/sandboxes/sb-2/log/op-2",
      .pidfile = "/store/sandboxes/sb-2/log/op-2/lazy.pid",
  };
  sl_error err = {0};
  sl_argv a;
  CHECK_OK(sl_criu_build_argv(&o, CRIU, &a, &err), &err);
  CHECK_STR(a.argv[1], "lazy-pages");
  CHECK(has_pair(&a, "-W", "/store/sandboxes/sb-2/log/op-2"));
  CHECK(has_pair(&a, "-o", "lazy-pages.log"));
  CHECK(find_arg(&a, "-d") > 0);
  CHECK(has_pair(&a, "--pidfile", "/store/sandboxes/sb-2/log/op-2/lazy.pid"));
  sl_argv_free(&a);
}

static void test_lazy_pages_need_work_dir(void) {
  sl_criu_opts o = {.command = SL_CRIU_LAZY_PAGES, .images_dir = "/store/snapshots/sn-1/images"};
  CHECK(rejects(&o, "work directory"));
  sl_criu_opts r = restore_opts();
  r.work_dir = NULL;
  r.lazy_pages = true;
  CHECK(rejects(&r, "-W"));
}

static void test_check_command(void) {
  sl_criu_opts o = {.command = SL_CRIU_CHECK};
  sl_error err = {0};
  sl_argv a;
  CHECK_OK(sl_criu_build_argv(&o, CRIU, &a, &err), &err);
  CHECK_INT(a.count, ==, 2);
  CHECK_STR(a.argv[1], "check");
  sl_argv_free(&a);

  o.feature = "uffd-noncoop";
  CHECK_OK(sl_criu_build_argv(&o, CRIU, &a, &err), &err);
  CHECK(has_pair(&a, "--feature", "uffd-noncoop"));
  sl_argv_free(&a);

  o.feature = "--all";
  CHECK(rejects(&o, "feature"));
  o.feature = "";
  CHECK(rejects(&o, "feature"));
}

static void test_missing_required(void) {
  sl_criu_opts o = dump_opts();
  o.images_dir = NULL;
  CHECK(rejects(&o, "-D"));
  o = dump_opts();
  o.work_dir = NULL;
  CHECK(rejects(&o, "-W"));
  o = dump_opts();
  o.pid = 0;
  CHECK(rejects(&o, "-t"));
  o = restore_opts();
  o.detach = true;
  CHECK(rejects(&o, "--pidfile"));
  o = restore_opts();
  o.images_dir = "";
  CHECK(rejects(&o, "empty path"));
  sl_error err = {0};
  sl_argv a;
  CHECK_INT(sl_criu_build_argv(NULL, CRIU, &a, &err), ==, -EINVAL);
  o = dump_opts();
  CHECK_INT(sl_criu_build_argv(&o, NULL, &a, &err), ==, -EINVAL);
  CHECK_INT(sl_criu_build_argv(&o, "criu", &a, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "absolute") != NULL);
}

static void test_relative_paths_rejected(void) {
  sl_criu_opts o = dump_opts();
  o.images_dir = "images";
  CHECK(rejects(&o, "absolute"));
  o = dump_opts();
  o.freeze_cgroup = "sandlot/sb-1";
  CHECK(rejects(&o, "--freeze-cgroup"));
  o = dump_opts();
  o.action_script = "sandlot-criu-action";
  CHECK(rejects(&o, "--action-script"));
  o = restore_opts();
  o.root = "root";
  CHECK(rejects(&o, "--root"));
  o = restore_opts();
  o.pidfile = "pid";
  CHECK(rejects(&o, "--pidfile"));
  o = restore_opts();
  o.log_name = "../elsewhere.log";
  CHECK(rejects(&o, "log name"));
  o = restore_opts();
  o.images_dir = "/store/a\nb";
  CHECK(rejects(&o, "newline"));
}

static void test_options_of_other_commands(void) {
  sl_criu_opts o = restore_opts();
  o.pid = 12;
  CHECK(rejects(&o, "-t"));
  o = restore_opts();
  o.leave_running = true;
  CHECK(rejects(&o, "--leave-running"));
  o = restore_opts();
  o.freeze_cgroup = "/sys/fs/cgroup/freezer/x";
  CHECK(rejects(&o, "--freeze-cgroup"));
  o = restore_opts();
  o.network_lock = SL_CRIU_NETLOCK_SKIP;
  CHECK(rejects(&o, "--network-lock"));
  o = restore_opts();
  o.ghost_limit = 1;
  CHECK(rejects(&o, "--ghost-limit"));
  o = restore_opts();
  o.freeze_timeout_s = 1;
  CHECK(rejects(&o, "--timeout"));
  o = dump_opts();
  o.freeze_timeout_s = -1;
  CHECK(rejects(&o, "--timeout"));
  o = dump_opts();
  o.root = "/r";
  CHECK(rejects(&o, "--root"));
  o = dump_opts();
  o.detach = true;
  CHECK(rejects(&o, "-d"));
  o = dump_opts();
  o.lazy_pages = true;
  CHECK(rejects(&o, "--lazy-pages"));
  o = dump_opts();
  o.feature = "uffd";
  CHECK(rejects(&o, "--feature"));
  sl_criu_opts c = {.command = SL_CRIU_CHECK, .images_dir = "/x"};
  CHECK(rejects(&c, "-D"));
  c = (sl_criu_opts){.command = SL_CRIU_CHECK, .empty_net_ns = true};
  CHECK(rejects(&c, "--empty-ns"));
  sl_criu_opts l = {.command = SL_CRIU_LAZY_PAGES, .images_dir = "/i", .work_dir = "/w",
                    .root = "/r"};
  CHECK(rejects(&l, "--root"));
  l.root = NULL;
  l.tcp_established = true;
  CHECK(rejects(&l, "--tcp-established"));
  sl_criu_opts bad = {.command = (sl_criu_command)9};
  CHECK(rejects(&bad, "command"));
}

static void test_invalid_combinations(void) {
  sl_criu_opts o = restore_opts();
  o.manage_cgroups = SL_CRIU_CGROUPS_IGNORE;
  o.cgroup_roots[0] = "freezer:/sandlot/sb-2";
  CHECK(rejects(&o, "ignore"));
  o = restore_opts();
  o.cgroup_roots[0] = "freezer:sandlot";
  CHECK(rejects(&o, "--cgroup-root"));
  o = restore_opts();
  o.cgroup_roots[0] = ":/sandlot";
  CHECK(rejects(&o, "--cgroup-root"));
  o = restore_opts();
  o.log_level = 5;
  CHECK(rejects(&o, "log level"));
  o = restore_opts();
  o.log_level = -1;
  CHECK(rejects(&o, "log level"));
}

static void test_paths_kept_verbatim(void) {
  sl_criu_opts o = restore_opts();
  o.images_dir = "/tmp/a dir/it's \"here\"";
  o.root = "/tmp/root $HOME;rm";
  sl_error err = {0};
  sl_argv a;
  CHECK_OK(sl_criu_build_argv(&o, CRIU, &a, &err), &err);
  CHECK(has_pair(&a, "-D", "/tmp/a dir/it's \"here\""));
  CHECK(has_pair(&a, "--root", "/tmp/root $HOME;rm"));
  char line[512];
  sl_criu_format_argv(a.argv, line, sizeof line);
  CHECK(strstr(line, "-D '/tmp/a dir/it'\\''s \"here\"'") != NULL);
  CHECK(strstr(line, "--root '/tmp/root $HOME;rm'") != NULL);
  CHECK(strncmp(line, CRIU " restore -D ", strlen(CRIU " restore -D ")) == 0);
  sl_argv_free(&a);
}

static void test_format_argv_truncates(void) {
  char *argv[] = {"criu", "dump", "-D", "/a/very/long/path", NULL};
  char small[10];
  sl_criu_format_argv(argv, small, sizeof small);
  CHECK_STR(small, "criu dump");
  char empty[] = "x";
  sl_criu_format_argv(argv, empty, 1);
  CHECK_STR(empty, "");
  char *quoted[] = {"", NULL};
  char out[8];
  CHECK_STR(sl_criu_format_argv(quoted, out, sizeof out), "''");
}

static void test_criu_path_override(void) {
  unsetenv("SANDLOT_CRIU");
  CHECK(sl_criu_path()[0] == '/');
  CHECK(strstr(sl_criu_path(), "criu") != NULL);
  setenv("SANDLOT_CRIU", "/tmp/other-criu", 1);
  CHECK_STR(sl_criu_path(), "/tmp/other-criu");
  setenv("SANDLOT_CRIU", "", 1);
  CHECK(strcmp(sl_criu_path(), "") != 0);
  unsetenv("SANDLOT_CRIU");
}

int main(void) {
  RUN(test_dump_minimal);
  RUN(test_dump_every_option);
  RUN(test_network_lock_methods);
  RUN(test_cgroup_modes);
  RUN(test_restore_every_option);
  RUN(test_external_resources);
  RUN(test_external_syntax_rejected);
  RUN(test_lazy_pages_daemon);
  RUN(test_lazy_pages_need_work_dir);
  RUN(test_check_command);
  RUN(test_missing_required);
  RUN(test_relative_paths_rejected);
  RUN(test_options_of_other_commands);
  RUN(test_invalid_combinations);
  RUN(test_paths_kept_verbatim);
  RUN(test_format_argv_truncates);
  RUN(test_criu_path_override);
  TEST_EXIT();
}
