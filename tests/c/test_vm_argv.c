/* Unit tests of the QEMU command line builder and the accelerator choice.
 * Pure: no QEMU, no root, no KVM. */
#include <errno.h>
#include <stdlib.h>

#include "test.h"
#include "vm_accel.h"
#include "vm_argv.h"

static sl_vm_spec base_spec(void) {
  sl_vm_spec s = {
      .qemu = "/usr/bin/qemu-system-x86_64",
      .accel = SL_VM_ACCEL_TCG,
      .memory_mb = 256,
      .vcpus = 1,
      .kernel = "/store/vm/vmlinuz",
      .initrd = "/store/vm/initrd",
      .cmdline = "console=ttyS0 quiet",
      .disk = "/store/sb/disk.qcow2",
      .ram_path = "/dev/shm/sb.ram",
      .ram_shared = true,
      .qmp_socket = "/store/sb/qmp.sock",
      .events_socket = "/store/sb/events.sock",
      .console_log = "/store/sb/console.log",
      .pidfile = "/store/sb/qemu.pid",
      .agent_ports = 2,
      .agent_sockets = {"/store/sb/agent-0.sock", "/store/sb/agent-1.sock"},
      .daemonize = true,
  };
  return s;
}

/* Index of the argument after `flag` whose value starts with `prefix`, or -1. */
static int find_option(const sl_args *a, const char *flag, const char *prefix) {
  for (size_t i = 0; i + 1 < a->n; i++)
    if (strcmp(a->v[i], flag) == 0 && strncmp(a->v[i + 1], prefix, strlen(prefix)) == 0)
      return (int)(i + 1);
  return -1;
}

static bool has_arg(const sl_args *a, const char *arg) {
  for (size_t i = 0; i < a->n; i++)
    if (strcmp(a->v[i], arg) == 0) return true;
  return false;
}

static void escape_doubles_commas(void) {
  char *s = sl_qemu_escape("/a,b/c,,d");
  CHECK_STR(s, "/a,,b/c,,,,d");
  free(s);
  s = sl_qemu_escape("");
  CHECK_STR(s, "");
  free(s);
}

static void build_lists_every_device(void) {
  sl_vm_spec s = base_spec();
  sl_args a = {0};
  sl_error err = {0};
  CHECK_OK(sl_vm_argv_build(&s, &a, &err), &err);
  CHECK_STR(a.v[0], "/usr/bin/qemu-system-x86_64");
  CHECK(a.v[a.n] == NULL);
  CHECK(has_arg(&a, "-nodefaults"));
  CHECK(find_option(&a, "-machine", "microvm,") > 0);
  CHECK(find_option(&a, "-accel", "tcg") > 0);
  CHECK(find_option(&a, "-cpu", "max") > 0);
  CHECK(find_option(&a, "-m", "256M") > 0);
  CHECK(find_option(&a, "-object",
                    "memory-backend-file,id=ram0,mem-path=/dev/shm/sb.ram,size=256M,share=on") > 0);
  CHECK(find_option(&a, "-kernel", "/store/vm/vmlinuz") > 0);
  CHECK(find_option(&a, "-initrd", "/store/vm/initrd") > 0);
  CHECK(find_option(&a, "-append", "console=ttyS0 quiet") > 0);
  CHECK(find_option(&a, "-chardev", "file,id=console,path=/store/sb/console.log") > 0);
  CHECK(find_option(&a, "-serial", "chardev:console") > 0);
  CHECK(find_option(&a, "-blockdev", "driver=file,node-name=disk-file,filename=/store/sb/disk.qcow2") > 0);
  CHECK(find_option(&a, "-device", "virtio-blk-device,drive=disk") > 0);
  CHECK(find_option(&a, "-device", "virtio-serial-device") > 0);
  CHECK(find_option(&a, "-chardev", "socket,id=agent0,path=/store/sb/agent-0.sock,server=on,wait=off") > 0);
  CHECK(find_option(&a, "-chardev", "socket,id=agent1,path=/store/sb/agent-1.sock,server=on,wait=off") > 0);
  CHECK(find_option(&a, "-device", "virtserialport,bus=vser0.0,nr=2,chardev=agent1,id=agentport1,name=sandlot.agent.1") > 0);
  CHECK(find_option(&a, "-chardev", "socket,id=qmp,path=/store/sb/qmp.sock,server=on,wait=off") > 0);
  CHECK(find_option(&a, "-mon", "chardev=qmp,mode=control") > 0);
  CHECK(find_option(&a, "-chardev", "socket,id=qmp-events,path=/store/sb/events.sock,server=on,wait=off") > 0);
  CHECK(find_option(&a, "-mon", "chardev=qmp-events,mode=control") > 0);
  CHECK(find_option(&a, "-device", "virtio-balloon-device,id=balloon0,free-page-reporting=on") > 0);
  CHECK(find_option(&a, "-pidfile", "/store/sb/qemu.pid") > 0);
  CHECK(has_arg(&a, "-daemonize"));
  CHECK(!has_arg(&a, "-incoming"));
  sl_args_free(&a);
}

static void build_fork_is_incoming_private(void) {
  sl_vm_spec s = base_spec();
  s.ram_shared = false;
  s.incoming_defer = true;
  s.accel = SL_VM_ACCEL_KVM;
  s.pidfile = NULL;
  s.daemonize = false;
  sl_args a = {0};
  sl_error err = {0};
  CHECK_OK(sl_vm_argv_build(&s, &a, &err), &err);
  CHECK(find_option(&a, "-incoming", "defer") > 0);
  CHECK(find_option(&a, "-accel", "kvm") > 0);
  CHECK(find_option(&a, "-cpu", "host") > 0);
  CHECK(find_option(&a, "-object", "memory-backend-file,id=ram0,mem-path=/dev/shm/sb.ram,size=256M,share=off") > 0);
  CHECK(!has_arg(&a, "-pidfile"));
  CHECK(!has_arg(&a, "-daemonize"));
  sl_args_free(&a);
}

static void build_escapes_commas_in_paths(void) {
  sl_vm_spec s = base_spec();
  s.disk = "/st,ore/disk.qcow2";
  s.ram_path = "/dev/shm/a,b.ram";
  s.qmp_socket = "/x,y/qmp.sock";
  s.console_log = "/x,y/console.log";
  s.agent_sockets[0] = "/x,y/agent-0.sock";
  s.kernel = "/k,1/vmlinuz";
  sl_args a = {0};
  sl_error err = {0};
  CHECK_OK(sl_vm_argv_build(&s, &a, &err), &err);
  CHECK(find_option(&a, "-blockdev", "driver=file,node-name=disk-file,filename=/st,,ore/disk.qcow2") > 0);
  CHECK(find_option(&a, "-object", "memory-backend-file,id=ram0,mem-path=/dev/shm/a,,b.ram,size=") > 0);
  CHECK(find_option(&a, "-chardev", "socket,id=qmp,path=/x,,y/qmp.sock,server") > 0);
  CHECK(find_option(&a, "-chardev", "file,id=console,path=/x,,y/console.log") > 0);
  CHECK(find_option(&a, "-chardev", "socket,id=agent0,path=/x,,y/agent-0.sock,server") > 0);
  /* -kernel takes a plain file name, which QEMU does not split at commas. */
  CHECK(find_option(&a, "-kernel", "/k,1/vmlinuz") > 0);
  sl_args_free(&a);
}

static void build_rejects_bad_memory(void) {
  const unsigned sizes[] = {0, SL_VM_MEMORY_MIN_MB - 1, SL_VM_MEMORY_MAX_MB + 1};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    sl_vm_spec s = base_spec();
    s.memory_mb = sizes[i];
    sl_args a = {0};
    sl_error err = {0};
    CHECK_INT(sl_vm_argv_build(&s, &a, &err), ==, -EINVAL);
    CHECK(strstr(err.msg, "invalid VM memory size") != NULL);
    CHECK(a.v == NULL);
  }
}

static void build_rejects_missing_fields(void) {
  sl_vm_spec s = base_spec();
  s.disk = NULL;
  sl_args a = {0};
  sl_error err = {0};
  CHECK_INT(sl_vm_argv_build(&s, &a, &err), ==, -EINVAL);
  CHECK_STR(err.msg, "invalid VM spec: disk is missing");

  s = base_spec();
  s.agent_sockets[1] = "";
  CHECK_INT(sl_vm_argv_build(&s, &a, &err), ==, -EINVAL);

  s = base_spec();
  s.vcpus = 0;
  CHECK_INT(sl_vm_argv_build(&s, &a, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "vCPU") != NULL);

  s = base_spec();
  s.agent_ports = SL_VM_AGENT_PORTS_MAX + 1;
  CHECK_INT(sl_vm_argv_build(&s, &a, &err), ==, -EINVAL);
  CHECK(a.v == NULL);
}

static void cpuinfo_flags_detect_virt(void) {
  CHECK(sl_vm_cpuinfo_has_virt("processor : 0\nflags\t\t: fpu vme vmx sse\n"));
  CHECK(sl_vm_cpuinfo_has_virt("flags : fpu svm\n"));
  CHECK(!sl_vm_cpuinfo_has_virt("flags : fpu vmxx svmx hypervisor\n"));
  CHECK(!sl_vm_cpuinfo_has_virt("model name : vmx svm\nflags : fpu\n"));
  CHECK(!sl_vm_cpuinfo_has_virt(""));
}

static void accel_override_is_parsed(void) {
  sl_vm_accel accel = SL_VM_ACCEL_KVM;
  sl_error err = {0};
  setenv("SANDLOT_VM_ACCEL", "tcg", 1);
  CHECK_OK(sl_vm_accel_choose(&accel, &err), &err);
  CHECK_INT(accel, ==, SL_VM_ACCEL_TCG);
  setenv("SANDLOT_VM_ACCEL", "kvm", 1);
  CHECK_OK(sl_vm_accel_choose(&accel, &err), &err);
  CHECK_INT(accel, ==, SL_VM_ACCEL_KVM);
  setenv("SANDLOT_VM_ACCEL", "hvf", 1);
  CHECK_INT(sl_vm_accel_choose(&accel, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "\"hvf\"") != NULL);
  unsetenv("SANDLOT_VM_ACCEL");
}

static void cmdline_carries_env_and_cwd(void) {
  char line[SL_VM_CMDLINE_MAX + 1];
  sl_error err = {0};
  sl_vm_cmdline_spec plain = {.agent_ports = 8};
  CHECK_OK(sl_vm_cmdline_build(&plain, line, sizeof line, &err), &err);
  CHECK_STR(line, "console=ttyS0 quiet panic=-1 pci=off rw sandlot.ports=8");

  /* "A=1\0B=two words\0" and "/work dir" in base64. */
  const char *env[] = {"A=1", "B=two words", NULL};
  sl_vm_cmdline_spec full = {.agent_ports = 2, .tsc_khz = 2600000, .env = env, .cwd = "/work dir"};
  CHECK_OK(sl_vm_cmdline_build(&full, line, sizeof line, &err), &err);
  CHECK(strstr(line, " sandlot.ports=2 ") != NULL);
  CHECK(strstr(line, " tsc_early_khz=2600000 tsc=reliable no_timer_check") != NULL);
  CHECK(strstr(line, " sandlot.env=QT0xAEI9dHdvIHdvcmRzAA== ") != NULL);
  CHECK(strstr(line, " sandlot.cwd=L3dvcmsgZGly") != NULL);
  CHECK(strchr(line, '\n') == NULL);
}

static void cmdline_rejects_bad_input(void) {
  char line[SL_VM_CMDLINE_MAX + 1];
  sl_error err = {0};
  const char *no_equals[] = {"NOEQUALS", NULL};
  sl_vm_cmdline_spec spec = {.agent_ports = 1, .env = no_equals};
  CHECK_INT(sl_vm_cmdline_build(&spec, line, sizeof line, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "invalid env entry (expected NAME=value): NOEQUALS") != NULL);
  spec = (sl_vm_cmdline_spec){.agent_ports = 1, .cwd = "relative"};
  CHECK_INT(sl_vm_cmdline_build(&spec, line, sizeof line, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "invalid cwd: relative") != NULL);

  static char big[1600];
  memset(big, 'x', sizeof big - 1);
  memcpy(big, "BIG=", 4);
  const char *huge[] = {big, NULL};
  spec = (sl_vm_cmdline_spec){.agent_ports = 1, .env = huge};
  CHECK_INT(sl_vm_cmdline_build(&spec, line, sizeof line, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "do not fit on the VM's kernel command line") != NULL);
}

int main(void) {
  RUN(escape_doubles_commas);
  RUN(build_lists_every_device);
  RUN(build_fork_is_incoming_private);
  RUN(build_escapes_commas_in_paths);
  RUN(build_rejects_bad_memory);
  RUN(build_rejects_missing_fields);
  RUN(cpuinfo_flags_detect_virt);
  RUN(accel_override_is_parsed);
  RUN(cmdline_carries_env_and_cwd);
  RUN(cmdline_rejects_bad_input);
  TEST_EXIT();
}
