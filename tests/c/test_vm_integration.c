/* Integration tests of the VM backend against real QEMU (TCG unless the
 * host has usable KVM): boot, snapshot, fork, pause/resume, rollback and
 * bad input.
 *
 * The guest root and agent come from vm_dev_root.h.
 * TODO: switch to sandlot-agent and the base template once they exist, and
 * add the /dev/urandom check for forks (it needs the agent's reseed).
 *
 * Needs root, qemu-system-x86_64, and the Debian mirror once to fetch the
 * guest kernel into $SANDLOT_BUILD_DIR/vm-cache. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "vm_dev_root.h"
#include "vm.h"
#include "vm_image.h"
#include "vm_util.h"

static char home[256];
static char cache[512];
static char base_disk[600];
static char agent_script[600];

static void setup(void) {
  if (geteuid() != 0) SKIP("VM integration tests need root");
  const char *which[] = {"sh", "-c", "command -v qemu-system-x86_64", NULL};
  if (sl_run(which, NULL, NULL) < 0) SKIP("qemu-system-x86_64 is not installed");

  const char *build = getenv("SANDLOT_BUILD_DIR");
  snprintf(cache, sizeof cache, "%s/vm-cache", build ? build : "/tmp");
  setenv("SANDLOT_VM_CACHE", cache, 1);
  snprintf(home, sizeof home, "/tmp/sandlot-vm-XXXXXX");
  if (mkdtemp(home) == NULL) exit(1);

  sl_error err = {0};
  if (vm_dev_setup(home, base_disk, sizeof base_disk, agent_script, sizeof agent_script,
                   &err) < 0) {
    fprintf(stderr, "setup failed: %s\n", err.msg);
    exit(1);
  }
}

/* True when `command` prints exactly `expected` (plus a newline). */
static bool guest_prints(sl_vm *vm, const char *command, const char *expected) {
  char *out = vm_dev_exec(vm, command);
  char want[256];
  snprintf(want, sizeof want, "%s\n", expected);
  bool ok = out != NULL && strcmp(out, want) == 0;
  if (!ok) fprintf(stderr, "guest `%s` printed \"%s\", expected \"%s\"\n", command, out, expected);
  free(out);
  return ok;
}

static sl_vm_options options(void) {
  return (sl_vm_options){.home = home, .base_disk = base_disk, .agent = agent_script,
                         .memory_mb = 256};
}

static bool qemu_running_for(const char *id) {
  char needle[300];
  snprintf(needle, sizeof needle, "%s/sandboxes/%s/qmp.sock", home, id);
  DIR *d = opendir("/proc");
  struct dirent *e;
  bool found = false;
  while (d && (e = readdir(d)) != NULL) {
    char path[300], *cmd = NULL;
    size_t len = 0;
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
    if (sl_read_file(path, 1 << 20, &cmd, &len, NULL) < 0) continue;
    for (size_t i = 0; i < len; i += strlen(cmd + i) + 1)
      if (strstr(cmd + i, needle)) found = true;
    free(cmd);
  }
  if (d) closedir(d);
  return found;
}

static bool sandbox_dir_exists(const char *id) {
  char path[400];
  snprintf(path, sizeof path, "%s/sandboxes/%s", home, id);
  return sl_path_exists(path);
}

static void boot_and_exec(void) {
  sl_vm *vm = NULL;
  sl_error err = {0};
  CHECK_OK(sl_vm_create(&(sl_vm_options){.home = home, .base_disk = base_disk,
                                          .agent = agent_script},
                        "sb-boot", &vm, &err),
           &err);
  CHECK(sl_vm_pid(vm) > 0);
  CHECK(guest_prints(vm, "echo hello", "hello"));
  CHECK(guest_prints(vm, "cat /data/seed", "from-template"));
  CHECK(guest_prints(vm, "ls /.sandlot", "agent"));
  CHECK_OK(sl_vm_delete(home, "sb-boot", &err), &err);
  CHECK(!qemu_running_for("sb-boot"));
  CHECK(!sandbox_dir_exists("sb-boot"));
  sl_vm_close(vm);
}

static void snapshot_fork_continuity(void) {
  sl_vm *src = NULL, *a = NULL, *b = NULL;
  sl_error err = {0};
  CHECK_OK(sl_vm_create(&(sl_vm_options){.home = home, .base_disk = base_disk,
                                          .agent = agent_script},
                        "sb-src", &src, &err),
           &err);
  CHECK(guest_prints(src, "n=1; echo $n", "1"));
  CHECK(guest_prints(src, "n=$((n+1)); echo $n", "2"));
  CHECK(guest_prints(src, "echo before > /data/f; sync; cat /data/f", "before"));

  sl_vm_snapshot_stats st;
  CHECK_OK(sl_vm_snapshot(src, "sn-one", &st, &err), &err);
  CHECK(st.pause_ms > 0);
  CHECK(st.state_bytes > 0);

  /* The source keeps running from where it was. */
  CHECK(guest_prints(src, "n=$((n+1)); echo $n", "3"));
  CHECK(guest_prints(src, "echo after > /data/f; cat /data/f", "after"));

  CHECK_OK(sl_vm_fork(home, "sn-one", "sb-fa", &a, &err), &err);
  CHECK_OK(sl_vm_fork(home, "sn-one", "sb-fb", &b, &err), &err);
  CHECK(guest_prints(a, "n=$((n+1)); echo $n", "3"));
  CHECK(guest_prints(b, "n=$((n+1)); echo $n", "3"));
  CHECK(guest_prints(a, "cat /data/f", "before"));
  CHECK(guest_prints(b, "cat /data/f", "before"));

  /* Forks are independent of each other and of the source. */
  CHECK(guest_prints(a, "n=$((n+10)); echo a > /data/g; echo $n", "13"));
  CHECK(guest_prints(b, "echo $n; cat /data/g 2>/dev/null || echo none", "3\nnone"));
  CHECK(guest_prints(src, "echo $n; cat /data/f", "3\nafter"));

  /* A snapshot in use by forks cannot be deleted. */
  CHECK_INT(sl_vm_snapshot_delete(home, "sn-one", &err), ==, -EBUSY);

  CHECK_OK(sl_vm_delete(home, "sb-fa", &err), &err);
  CHECK_OK(sl_vm_delete(home, "sb-fb", &err), &err);
  CHECK_OK(sl_vm_delete(home, "sb-src", &err), &err);
  CHECK_OK(sl_vm_snapshot_delete(home, "sn-one", &err), &err);
  sl_vm_close(a);
  sl_vm_close(b);
  sl_vm_close(src);
}

static void fork_of_fork(void) {
  sl_vm *src = NULL, *a = NULL, *aa = NULL;
  sl_error err = {0};
  CHECK_OK(sl_vm_create(&(sl_vm_options){.home = home, .base_disk = base_disk,
                                          .agent = agent_script},
                        "sb-g0", &src, &err),
           &err);
  CHECK(guest_prints(src, "n=5; echo $n", "5"));
  CHECK_OK(sl_vm_snapshot(src, "sn-g0", NULL, &err), &err);
  CHECK_OK(sl_vm_fork(home, "sn-g0", "sb-g1", &a, &err), &err);
  CHECK(guest_prints(a, "n=$((n+1)); echo x > /data/g1; echo $n", "6"));
  /* The fork's RAM is private, so this snapshot carries RAM in its state. */
  CHECK_OK(sl_vm_snapshot(a, "sn-g1", NULL, &err), &err);
  CHECK_OK(sl_vm_fork(home, "sn-g1", "sb-g2", &aa, &err), &err);
  CHECK(guest_prints(aa, "n=$((n+1)); echo $n; cat /data/g1", "7\nx"));
  CHECK_OK(sl_vm_delete(home, "sb-g2", &err), &err);
  CHECK_OK(sl_vm_delete(home, "sb-g1", &err), &err);
  CHECK_OK(sl_vm_delete(home, "sb-g0", &err), &err);
  CHECK_OK(sl_vm_snapshot_delete(home, "sn-g1", &err), &err);
  CHECK_OK(sl_vm_snapshot_delete(home, "sn-g0", &err), &err);
  sl_vm_close(aa);
  sl_vm_close(a);
  sl_vm_close(src);
}

static void pause_and_resume(void) {
  sl_vm *vm = NULL;
  sl_error err = {0};
  sl_vm_options opt = options();
  CHECK_OK(sl_vm_create(&opt, "sb-pause", &vm, &err), &err);
  CHECK(guest_prints(vm, "n=41; echo paused > /data/p; echo $n", "41"));
  CHECK_OK(sl_vm_pause(vm, &err), &err);
  CHECK(sl_vm_is_paused(vm));
  CHECK(!qemu_running_for("sb-pause"));
  CHECK_INT(sl_vm_pid(vm), ==, 0);
  CHECK_INT(sl_vm_freeze(vm, &err), ==, -ESRCH);

  /* Reopen by id, as another process would. */
  sl_vm *again = NULL;
  CHECK_OK(sl_vm_open(home, "sb-pause", &again, &err), &err);
  CHECK(sl_vm_is_paused(again));
  CHECK_OK(sl_vm_resume(again, &err), &err);
  CHECK(!sl_vm_is_paused(again));
  CHECK(guest_prints(again, "n=$((n+1)); echo $n; cat /data/p", "42\npaused"));
  CHECK_OK(sl_vm_delete(home, "sb-pause", &err), &err);
  sl_vm_close(again);
  sl_vm_close(vm);
}

static void rollback_in_place(void) {
  sl_vm *vm = NULL;
  sl_error err = {0};
  sl_vm_options opt = options();
  CHECK_OK(sl_vm_create(&opt, "sb-rb", &vm, &err), &err);
  CHECK(guest_prints(vm, "n=7; echo keep > /data/r; echo $n", "7"));
  CHECK_OK(sl_vm_snapshot(vm, "sn-rb", NULL, &err), &err);
  CHECK(guest_prints(vm, "n=100; echo lost > /data/r; rm /data/seed; echo $n", "100"));
  CHECK_OK(sl_vm_rollback(vm, "sn-rb", &err), &err);
  CHECK(guest_prints(vm, "echo $n; cat /data/r /data/seed", "7\nkeep\nfrom-template"));
  /* A rolled-back VM has shared RAM again and snapshots on the fast path. */
  CHECK_OK(sl_vm_snapshot(vm, "sn-rb2", NULL, &err), &err);
  CHECK_OK(sl_vm_delete(home, "sb-rb", &err), &err);
  CHECK_OK(sl_vm_snapshot_delete(home, "sn-rb2", &err), &err);
  CHECK_OK(sl_vm_snapshot_delete(home, "sn-rb", &err), &err);
  sl_vm_close(vm);
}

static void bad_input_leaves_nothing(void) {
  sl_vm *vm = NULL;
  sl_error err = {0};
  sl_vm_options opt = options();

  CHECK_INT(sl_vm_fork(home, "sn-missing", "sb-bad1", &vm, &err), ==, -ENOENT);
  CHECK(strstr(err.msg, "snapshot not found: sn-missing") != NULL);
  CHECK(!sandbox_dir_exists("sb-bad1"));

  opt.memory_mb = 8;
  CHECK_INT(sl_vm_create(&opt, "sb-bad2", &vm, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "invalid VM memory size: 8 MiB") != NULL);
  CHECK(!sandbox_dir_exists("sb-bad2"));

  opt = options();
  opt.base_disk = "/nonexistent/base.qcow2";
  CHECK_INT(sl_vm_create(&opt, "sb-bad3", &vm, &err), ==, -ENOENT);
  CHECK(!sandbox_dir_exists("sb-bad3"));

  CHECK_INT(sl_vm_open(home, "sb-nothing", &vm, &err), ==, -ENOENT);
  CHECK_INT(sl_vm_fork(home, "../x", "sb-bad4", &vm, &err), ==, -EINVAL);
}

static void corrupted_state_fails_cleanly(void) {
  sl_vm *src = NULL, *fork = NULL;
  sl_error err = {0};
  sl_vm_options opt = options();
  CHECK_OK(sl_vm_create(&opt, "sb-cs", &src, &err), &err);
  CHECK_OK(sl_vm_snapshot(src, "sn-cs", NULL, &err), &err);
  CHECK_OK(sl_vm_delete(home, "sb-cs", &err), &err);
  sl_vm_close(src);

  char state[400];
  snprintf(state, sizeof state, "%s/snapshots/sn-cs/state", home);
  int fd = open(state, O_WRONLY);
  CHECK(fd >= 0);
  CHECK_INT(pwrite(fd, "garbage!garbage!", 16, 0), ==, 16);
  close(fd);
  CHECK_INT(sl_vm_fork(home, "sn-cs", "sb-cs-fork", &fork, &err), ==, -EIO);
  CHECK(strstr(err.msg, "fork sb-cs-fork from sn-cs") != NULL);
  CHECK(!sandbox_dir_exists("sb-cs-fork"));
  CHECK(!qemu_running_for("sb-cs-fork"));

  CHECK_INT(truncate(state, 1000), ==, 0);
  CHECK_INT(sl_vm_fork(home, "sn-cs", "sb-cs-fork", &fork, &err), ==, -EIO);
  CHECK(!sandbox_dir_exists("sb-cs-fork"));
  CHECK(!qemu_running_for("sb-cs-fork"));
  CHECK_OK(sl_vm_snapshot_delete(home, "sn-cs", &err), &err);
}

/* Delete every sandbox a failed check left behind (QEMU, RAM file, files),
 * then the store. */
static void cleanup(void) {
  char dir[400];
  snprintf(dir, sizeof dir, "%s/sandboxes", home);
  DIR *d = opendir(dir);
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') sl_vm_delete(home, e->d_name, NULL);
  if (d) closedir(d);
  sl_remove_tree(home, NULL);
}

int main(void) {
  setup();
  atexit(cleanup);
  RUN(boot_and_exec);
  RUN(snapshot_fork_continuity);
  RUN(fork_of_fork);
  RUN(pause_and_resume);
  RUN(rollback_in_place);
  RUN(bad_input_leaves_nothing);
  RUN(corrupted_state_fails_cleanly);
  TEST_EXIT();
}
