/* VM sandboxes through the sandbox API (sandbox.h, backend "vm"): the base
 * template's root (Debian bookworm with python3) booted under QEMU with
 * sandlot-agent as PID 1, exec through the agent, freeze and thaw, kill,
 * remove, gc, and a failed create that leaves no row.
 *
 * Needs root and QEMU. The base template is built with mmdebstrap into
 * $SANDLOT_TEMPLATE_CACHE (default /var/cache/sandlot) on first use, and
 * the guest kernel is fetched into $SANDLOT_BUILD_DIR/vm-cache. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox.h"
#include "test.h"
#include "vm_fixture.h"
#include "vm_internal.h"

static char home[] = "/tmp/sandlot-vmsb-XXXXXX";
static sl_sandboxes *H;

static bool guest_prints(const char *id, const char *command, const char *expected) {
  sl_vm *vm = NULL;
  sl_error err = {0};
  if (sl_vm_open(home, id, &vm, &err) < 0) {
    fprintf(stderr, "open %s: %s\n", id, err.msg);
    return false;
  }
  int code = -1;
  char *out = vm_exec(vm, command, &code, &err);
  sl_vm_close(vm);
  char want[256];
  snprintf(want, sizeof want, "%s\n", expected);
  bool ok = out != NULL && strcmp(out, want) == 0;
  if (!ok)
    fprintf(stderr, "guest `%s` printed \"%s\" (exit %d, %s), expected \"%s\"\n", command,
            out ? out : "", code, err.msg, expected);
  free(out);
  return ok;
}

/* True unless `pid` has exited: gone, or a zombie not yet reaped by its
 * new parent (QEMU daemonizes, so init reaps it). */
static bool process_alive(pid_t pid) {
  char path[64], *stat = NULL;
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  if (sl_read_file(path, 4096, &stat, NULL, NULL) < 0) return false;
  const char *close_paren = strrchr(stat, ')');
  bool alive = close_paren != NULL && close_paren[1] == ' ' && close_paren[2] != 'Z';
  free(stat);
  return alive;
}

static size_t sandbox_count(void) {
  sl_sandbox_info *list = NULL;
  size_t count = 0;
  sl_error err = {0};
  if (sl_sandbox_list(H, &list, &count, &err) < 0) return (size_t)-1;
  free(list);
  return count;
}

static bool ram_file_exists(const char *id) {
  char path[400];
  vm_live_ram_path(home, id, path, sizeof path);
  return sl_path_exists(path);
}

static void create_exec_kill_remove(void) {
  sl_create_spec spec = {.backend = SL_BACKEND_VM, .memory = "256M"};
  sl_sandbox_info info;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(H, &spec, &info, &err), &err);
  CHECK_INT(info.backend, ==, SL_BACKEND_VM);
  CHECK_INT(info.state, ==, SL_SANDBOX_RUNNING);
  CHECK_STR(info.template_name, "base");
  CHECK(info.init_pid > 0);
  CHECK_INT(info.memory_bytes, ==, 256u << 20);
  CHECK(guest_prints(info.id, "python3 -c 'print(6 * 7)'", "42"));
  CHECK(guest_prints(info.id, "cut -d. -f1 /etc/debian_version", "12"));

  CHECK_OK(sl_sandbox_freeze(H, info.id, &err), &err);
  sl_sandbox_info now;
  CHECK_OK(sl_sandbox_get(H, info.id, &now, &err), &err);
  CHECK_INT(now.state, ==, SL_SANDBOX_FROZEN);
  CHECK_OK(sl_sandbox_thaw(H, info.id, &err), &err);
  CHECK_OK(sl_sandbox_get(H, info.id, &now, &err), &err);
  CHECK_INT(now.state, ==, SL_SANDBOX_RUNNING);
  CHECK(guest_prints(info.id, "echo thawed", "thawed"));

  CHECK_INT(sl_sandbox_set_timeout(H, info.id, 60, &err), ==, -ENOTSUP);

  CHECK_OK(sl_sandbox_kill(H, info.id, &err), &err);
  CHECK_OK(sl_sandbox_get(H, info.id, &now, &err), &err);
  CHECK_INT(now.state, ==, SL_SANDBOX_DEAD);
  CHECK_STR(now.end_reason, "killed");
  CHECK(!process_alive(info.init_pid));
  CHECK(!ram_file_exists(info.id));
  CHECK_INT(sl_sandbox_kill(H, info.id, &err), ==, -ESRCH);

  CHECK_OK(sl_sandbox_remove(H, info.id, &err), &err);
  CHECK_INT(sl_sandbox_get(H, info.id, &now, &err), ==, -ENOENT);
  char dir[400];
  snprintf(dir, sizeof dir, "%s/sandboxes/%s", home, info.id);
  CHECK(!sl_path_exists(dir));
}

static void gc_marks_powered_off_vm(void) {
  sl_create_spec spec = {.backend = SL_BACKEND_VM};
  sl_sandbox_info info;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(H, &spec, &info, &err), &err);
  int pidfd = (int)syscall(SYS_pidfd_open, info.init_pid, 0);
  CHECK(pidfd >= 0);
  sl_vm *vm = NULL;
  CHECK_OK(sl_vm_open(home, info.id, &vm, &err), &err);
  /* Debian's minbase has no poweroff command; sysrq "o" powers off. */
  free(vm_exec(vm, "echo o > /proc/sysrq-trigger", NULL, &err));
  sl_vm_close(vm);
  struct pollfd exited = {.fd = pidfd, .events = POLLIN};
  CHECK_INT(poll(&exited, 1, 30000), ==, 1);
  close(pidfd);

  int cleaned = 0;
  CHECK_OK(sl_sandbox_gc(H, &cleaned, &err), &err);
  CHECK(cleaned > 0);
  sl_sandbox_info now;
  CHECK_OK(sl_sandbox_get(H, info.id, &now, &err), &err);
  CHECK_INT(now.state, ==, SL_SANDBOX_DEAD);
  CHECK_STR(now.end_reason, "exited");
  CHECK(!ram_file_exists(info.id));
  CHECK_OK(sl_sandbox_remove(H, info.id, &err), &err);
}

static void failed_create_leaves_no_row(void) {
  size_t before = sandbox_count();
  sl_create_spec spec = {.backend = SL_BACKEND_VM, .memory = "16M"};
  sl_sandbox_info info;
  sl_error err = {0};
  CHECK_INT(sl_sandbox_create(H, &spec, &info, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "invalid VM memory size: 16 MiB") != NULL);
  CHECK_INT(sandbox_count(), ==, before);

  spec = (sl_create_spec){.backend = SL_BACKEND_VM, .timeout_sec = 10};
  CHECK_INT(sl_sandbox_create(H, &spec, &info, &err), ==, -ENOTSUP);
  CHECK_INT(sandbox_count(), ==, before);
}

int main(void) {
  if (geteuid() != 0) SKIP("VM sandbox tests need root");
  const char *which[] = {"sh", "-c", "command -v qemu-system-x86_64", NULL};
  if (sl_run_output(which, NULL, NULL) < 0) SKIP("qemu-system-x86_64 is not installed");
  const char *build = getenv("SANDLOT_BUILD_DIR");
  char cache[512];
  snprintf(cache, sizeof cache, "%s/vm-cache", build ? build : "/tmp");
  setenv("SANDLOT_VM_CACHE", cache, 1);
  if (mkdtemp(home) == NULL) return 1;
  sl_error err = {0};
  if (sl_sandboxes_open(home, &H, &err) < 0) {
    fprintf(stderr, "open store: %s\n", err.msg);
    return 1;
  }
  RUN(create_exec_kill_remove);
  RUN(gc_marks_powered_off_vm);
  RUN(failed_create_leaves_no_row);

  /* Kill whatever a failed check left running, then remove the store. */
  sl_sandbox_info *list = NULL;
  size_t count = 0;
  if (sl_sandbox_list(H, &list, &count, &err) == 0)
    for (size_t i = 0; i < count; i++) sl_vm_delete(home, list[i].id, NULL);
  free(list);
  sl_sandboxes_close(H);
  sl_remove_tree(home, NULL);
  TEST_EXIT();
}
