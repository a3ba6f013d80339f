/* Pure parts of the process backend: overlay options, mount listing,
 * the monitor config, the capability set and monitor replies. */
#include <errno.h>
#include <linux/capability.h>

#include "monitor_client.h"
#include "proc_config.h"
#include "proc_init.h"
#include "proc_overlay.h"
#include "template.h"
#include "test.h"

static void overlay_options_order_layers(void) {
  const char *lowers[] = {"/s/layers/ly-agent", "/s/layers/ly-base"};
  char buf[4096];
  sl_error err = {0};
  CHECK_OK(sl_overlay_options(lowers, 2, "/s/sb/upper", "/s/sb/work", buf, sizeof buf, &err), &err);
  CHECK_STR(buf, "lowerdir=/s/layers/ly-agent:/s/layers/ly-base,upperdir=/s/sb/upper,"
                 "workdir=/s/sb/work");
}

static void overlay_options_reject_bad_paths(void) {
  char buf[4096];
  sl_error err = {0};
  const char *colon[] = {"/s/a:b"};
  CHECK_INT(sl_overlay_options(colon, 1, "/u", "/w", buf, sizeof buf, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "/s/a:b") != NULL);
  const char *comma[] = {"/s/a,b"};
  CHECK_INT(sl_overlay_options(comma, 1, "/u", "/w", buf, sizeof buf, &err), ==, -EINVAL);
  const char *relative[] = {"layers/a"};
  CHECK_INT(sl_overlay_options(relative, 1, "/u", "/w", buf, sizeof buf, &err), ==, -EINVAL);
  const char *fine[] = {"/a"};
  CHECK_INT(sl_overlay_options(fine, 1, "/u", "w", buf, sizeof buf, &err), ==, -EINVAL);
  CHECK_INT(sl_overlay_options(fine, 0, "/u", "/w", buf, sizeof buf, &err), ==, -EINVAL);
}

static void overlay_options_fit_one_page(void) {
  static char long_path[3000];
  memset(long_path, 'x', sizeof long_path - 1);
  long_path[0] = '/';
  const char *lowers[] = {long_path, long_path};
  char buf[8192];
  sl_error err = {0};
  CHECK_INT(sl_overlay_options(lowers, 2, "/u", "/w", buf, sizeof buf, &err), ==, -ENAMETOOLONG);
  CHECK_INT(sl_overlay_options(lowers, 1, "/u", "/w", buf, 100, &err), ==, -ENAMETOOLONG);
}

static void mounts_below_lists_newest_first(void) {
  const char *info =
      "1 0 8:1 / / rw - ext4 /dev/vda rw\n"
      "2 1 0:40 / /s/sandboxes/sb-1/root rw - overlay overlay rw\n"
      "3 2 0:41 / /s/sandboxes/sb-1/root/proc rw - proc proc rw\n"
      "4 1 0:42 / /s/sandboxes/sb-10/root rw - overlay overlay rw\n"
      "5 1 0:43 / /s/sandboxes/sb-1/with\\040space rw - tmpfs tmpfs rw\n";
  size_t n = 0;
  char **mounts = sl_mounts_below(info, "/s/sandboxes/sb-1", &n);
  CHECK(mounts != NULL);
  CHECK_INT(n, ==, 3);
  CHECK_STR(mounts[0], "/s/sandboxes/sb-1/with space");
  CHECK_STR(mounts[1], "/s/sandboxes/sb-1/root/proc");
  CHECK_STR(mounts[2], "/s/sandboxes/sb-1/root");
  CHECK(mounts[3] == NULL);
  sl_strv_free(mounts);
}

static void config_round_trips(void) {
  char *lowers[] = {"/s/l/a", "/s/l/b", NULL};
  char *env[] = {"A=1", "MULTI=line1\nline2\\end", NULL};
  sl_proc_config cfg = {
      .id = "sb-0123456789ab", .home = "/s", .root = "/s/sb/root", .upper = "/s/sb/upper",
      .work = "/s/sb/work", .lowers = lowers, .nlowers = 2,
      .hostname = "box", .cwd = "/work", .env = env, .nenv = 2, .launch = "fresh",
      .limits = {512ULL << 20, 64, 1024, 0.25}, .timeout_ms = 5000,
      .on_timeout = SL_ON_TIMEOUT_PAUSE, .auto_kill = 1,
  };
  sl_proc_config fork_cfg = cfg;
  fork_cfg.launch = "fork";
  fork_cfg.images = "/s/snapshots/sn-1/images";
  fork_cfg.on_fork = "echo 'a b'\nexit 3";
  fork_cfg.resume = 1;
  char *text = sl_proc_config_format(&cfg);
  CHECK(text != NULL);
  sl_proc_config back;
  sl_error err = {0};
  int rc = sl_proc_config_parse(text, &back, &err);
  free(text);
  CHECK_OK(rc, &err);
  CHECK_STR(back.id, "sb-0123456789ab");
  CHECK_INT(back.nlowers, ==, 2);
  CHECK_STR(back.lowers[1], "/s/l/b");
  CHECK(back.lowers[2] == NULL);
  CHECK_INT(back.nenv, ==, 2);
  CHECK_STR(back.env[1], "MULTI=line1\nline2\\end");
  CHECK_STR(back.cwd, "/work");
  CHECK(back.limits.memory_bytes == 512ULL << 20);
  CHECK_INT(back.limits.pids_max, ==, 64);
  CHECK(back.limits.cpus == 0.25);
  CHECK_INT(back.timeout_ms, ==, 5000);
  CHECK_INT(back.on_timeout, ==, SL_ON_TIMEOUT_PAUSE);
  CHECK_INT(back.auto_kill, ==, 1);
  CHECK(back.images == NULL);
  CHECK(back.on_fork == NULL);
  CHECK_INT(back.resume, ==, 0);
  sl_proc_config_free(&back);

  text = sl_proc_config_format(&fork_cfg);
  CHECK(text != NULL);
  rc = sl_proc_config_parse(text, &back, &err);
  free(text);
  CHECK_OK(rc, &err);
  CHECK_STR(back.launch, "fork");
  CHECK_STR(back.images, "/s/snapshots/sn-1/images");
  CHECK_STR(back.on_fork, "echo 'a b'\nexit 3");
  CHECK_INT(back.resume, ==, 1);
  sl_proc_config_free(&back);
}

static void config_rejects_bad_text(void) {
  sl_proc_config cfg;
  sl_error err = {0};
  CHECK_INT(sl_proc_config_parse("id=sb-1\nno equals sign\n", &cfg, &err), ==, -EINVAL);
  CHECK_INT(sl_proc_config_parse("id=sb-1\nhome=/s\n", &cfg, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "lacks") != NULL);
  CHECK_INT(sl_proc_config_parse("id=a\nhome=/s\nroot=/r\nupper=/u\nwork=/w\nlower=/l\n"
                                 "pids_max=12x\n",
                                 &cfg, &err),
            ==, -EINVAL);
  CHECK(strstr(err.msg, "pids_max=12x") != NULL);
  CHECK_INT(sl_proc_config_parse("id=a\nhome=/s\nroot=/r\nupper=/u\nwork=/w\nlower=/l\n"
                                 "on_timeout=explode\n",
                                 &cfg, &err),
            ==, -EINVAL);
}

static void capabilities_keep_root_basics_only(void) {
  CHECK(sl_proc_cap_kept(CAP_CHOWN));
  CHECK(sl_proc_cap_kept(CAP_SETUID));
  CHECK(sl_proc_cap_kept(CAP_KILL));
  const int dropped[] = {CAP_SYS_ADMIN,  CAP_SYS_PTRACE, CAP_SYS_MODULE, CAP_SYS_RAWIO,
                         CAP_SYS_TIME,   CAP_NET_ADMIN,  CAP_MKNOD,      CAP_DAC_READ_SEARCH,
                         CAP_SYS_BOOT,   CAP_BPF,        CAP_SYS_RESOURCE, CAP_CHECKPOINT_RESTORE,
                         CAP_SYSLOG,     CAP_MAC_ADMIN,  CAP_LINUX_IMMUTABLE};
  for (size_t i = 0; i < sizeof dropped / sizeof dropped[0]; i++) {
    if (sl_proc_cap_kept(dropped[i])) fprintf(stderr, "capability %d kept\n", dropped[i]);
    CHECK(!sl_proc_cap_kept(dropped[i]));
  }
}

static void devices_are_the_safe_set(void) {
  int n = 0;
  for (const sl_proc_device *d = sl_proc_devices; d->name; d++, n++)
    CHECK(d->major == 1 || (d->major == 5 && d->minor == 0));
  CHECK_INT(n, ==, 6);
}

static void monitor_replies_parse(void) {
  char reply[64];
  sl_error err = {0};
  CHECK_OK(sl_monitor_parse_reply("ok", reply, sizeof reply, &err), &err);
  CHECK_STR(reply, "");
  CHECK_OK(sl_monitor_parse_reply("ok deadline_ms=5", reply, sizeof reply, &err), &err);
  CHECK_STR(reply, "deadline_ms=5");
  CHECK_INT(sl_monitor_parse_reply("err ESRCH sandbox has ended", reply, sizeof reply, &err), ==,
            -ESRCH);
  CHECK_STR(err.msg, "sandbox has ended");
  CHECK_INT(sl_monitor_parse_reply("err EWHATEVER x", reply, sizeof reply, &err), ==, -EIO);
  CHECK_INT(sl_monitor_parse_reply("okay", reply, sizeof reply, &err), ==, -EPROTO);
  CHECK_INT(sl_monitor_parse_reply("", reply, sizeof reply, &err), ==, -EPROTO);
}

int main(void) {
  RUN(overlay_options_order_layers);
  RUN(overlay_options_reject_bad_paths);
  RUN(overlay_options_fit_one_page);
  RUN(mounts_below_lists_newest_first);
  RUN(config_round_trips);
  RUN(config_rejects_bad_text);
  RUN(capabilities_keep_root_basics_only);
  RUN(devices_are_the_safe_set);
  RUN(monitor_replies_parse);
  TEST_EXIT();
}
