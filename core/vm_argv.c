#include "vm_argv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sl_args_push(sl_args *argv, const char *arg, sl_error *err) {
  if (argv->n + 2 > argv->cap) {
    size_t cap = argv->cap ? argv->cap * 2 : 32;
    char **v = realloc(argv->v, cap * sizeof *v);
    if (v == NULL) return sl_error_set(err, ENOMEM, "out of memory building argv");
    argv->v = v;
    argv->cap = cap;
  }
  char *copy = strdup(arg);
  if (copy == NULL) return sl_error_set(err, ENOMEM, "out of memory building argv");
  argv->v[argv->n++] = copy;
  argv->v[argv->n] = NULL;
  return 0;
}

int sl_args_pushf(sl_args *argv, sl_error *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  int n = vasprintf(&s, fmt, ap);
  va_end(ap);
  if (n < 0) return sl_error_set(err, ENOMEM, "out of memory building argv");
  int rc = sl_args_push(argv, s, err);
  free(s);
  return rc;
}

void sl_args_free(sl_args *argv) {
  for (size_t i = 0; i < argv->n; i++) free(argv->v[i]);
  free(argv->v);
  argv->v = NULL;
  argv->n = argv->cap = 0;
}

char *sl_qemu_escape(const char *value) {
  size_t len = strlen(value), commas = 0;
  for (size_t i = 0; i < len; i++) commas += value[i] == ',';
  char *out = malloc(len + commas + 1);
  if (out == NULL) return NULL;
  char *p = out;
  for (size_t i = 0; i < len; i++) {
    *p++ = value[i];
    if (value[i] == ',') *p++ = ',';
  }
  *p = '\0';
  return out;
}

const char *sl_vm_accel_name(sl_vm_accel accel) {
  return accel == SL_VM_ACCEL_KVM ? "kvm" : "tcg";
}

static int require_path(const char *value, const char *field, sl_error *err) {
  if (value == NULL || value[0] == '\0')
    return sl_error_set(err, EINVAL, "invalid VM spec: %s is missing", field);
  return 0;
}

static int validate(const sl_vm_spec *s, sl_error *err) {
  const struct {
    const char *value, *field;
  } paths[] = {{s->qemu, "qemu"},         {s->kernel, "kernel"},
               {s->initrd, "initrd"},     {s->disk, "disk"},
               {s->ram_path, "ram_path"}, {s->qmp_socket, "qmp_socket"},
               {s->console_log, "console_log"}};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
    if (require_path(paths[i].value, paths[i].field, err) < 0) return -EINVAL;

  if (s->memory_mb < SL_VM_MEMORY_MIN_MB || s->memory_mb > SL_VM_MEMORY_MAX_MB)
    return sl_error_set(err, EINVAL,
                        "invalid VM memory size: %u MiB (expected %u to %u MiB)",
                        s->memory_mb, SL_VM_MEMORY_MIN_MB, SL_VM_MEMORY_MAX_MB);
  if (s->vcpus < 1 || s->vcpus > SL_VM_VCPUS_MAX)
    return sl_error_set(err, EINVAL, "invalid VM vCPU count: %u (expected 1 to %u)",
                        s->vcpus, SL_VM_VCPUS_MAX);
  if (s->agent_ports < 1 || s->agent_ports > SL_VM_AGENT_PORTS_MAX)
    return sl_error_set(err, EINVAL, "invalid VM agent port count: %u (expected 1 to %u)",
                        s->agent_ports, SL_VM_AGENT_PORTS_MAX);
  for (unsigned i = 0; i < s->agent_ports; i++)
    if (require_path(s->agent_sockets[i], "agent_sockets[]", err) < 0) return -EINVAL;
  return 0;
}

/* Push "<prefix><escaped path><suffix>". */
static int push_path_option(sl_args *argv, const char *prefix, const char *path,
                            const char *suffix, sl_error *err) {
  char *escaped = sl_qemu_escape(path);
  if (escaped == NULL) return sl_error_set(err, ENOMEM, "out of memory building argv");
  int rc = sl_args_pushf(argv, err, "%s%s%s", prefix, escaped, suffix);
  free(escaped);
  return rc;
}

/* Machine, accelerator, CPU and memory. Guest RAM is always a file so that a
 * snapshot can copy it and forks can map it (see vm.c). */
static int push_machine(const sl_vm_spec *s, sl_args *a, sl_error *err) {
  bool kvm = s->accel == SL_VM_ACCEL_KVM;
  if (sl_args_push(a, s->qemu, err) < 0 || sl_args_push(a, "-nodefaults", err) < 0 ||
      sl_args_push(a, "-no-user-config", err) < 0 ||
      sl_args_push(a, "-display", err) < 0 || sl_args_push(a, "none", err) < 0 ||
      sl_args_push(a, "-no-reboot", err) < 0 || sl_args_push(a, "-machine", err) < 0 ||
      sl_args_push(a, "microvm,x-option-roms=off,memory-backend=ram0", err) < 0 ||
      sl_args_push(a, "-accel", err) < 0 ||
      sl_args_push(a, kvm ? "kvm" : "tcg,thread=multi", err) < 0 ||
      sl_args_push(a, "-cpu", err) < 0 || sl_args_push(a, kvm ? "host" : "max", err) < 0 ||
      sl_args_push(a, "-smp", err) < 0 || sl_args_pushf(a, err, "%u", s->vcpus) < 0 ||
      sl_args_push(a, "-m", err) < 0 || sl_args_pushf(a, err, "%uM", s->memory_mb) < 0 ||
      sl_args_push(a, "-object", err) < 0)
    return -err->code;
  char suffix[64];
  snprintf(suffix, sizeof suffix, ",size=%uM,share=%s", s->memory_mb,
           s->ram_shared ? "on" : "off");
  return push_path_option(a, "memory-backend-file,id=ram0,mem-path=", s->ram_path, suffix,
                          err);
}

static int push_boot(const sl_vm_spec *s, sl_args *a, sl_error *err) {
  if (sl_args_push(a, "-kernel", err) < 0 || sl_args_push(a, s->kernel, err) < 0 ||
      sl_args_push(a, "-initrd", err) < 0 || sl_args_push(a, s->initrd, err) < 0 ||
      sl_args_push(a, "-append", err) < 0 ||
      sl_args_push(a, s->cmdline ? s->cmdline : "", err) < 0)
    return -err->code;
  return 0;
}

/* The serial console goes to a file chardev: a socket chardev without a
 * client drops output. */
static int push_console(const sl_vm_spec *s, sl_args *a, sl_error *err) {
  if (sl_args_push(a, "-chardev", err) < 0 ||
      push_path_option(a, "file,id=console,path=", s->console_log, "", err) < 0 ||
      sl_args_push(a, "-serial", err) < 0 || sl_args_push(a, "chardev:console", err) < 0)
    return -err->code;
  return 0;
}

static int push_disk(const sl_vm_spec *s, sl_args *a, sl_error *err) {
  if (sl_args_push(a, "-blockdev", err) < 0 ||
      push_path_option(a, "driver=file,node-name=disk-file,filename=", s->disk, "", err) < 0 ||
      sl_args_push(a, "-blockdev", err) < 0 ||
      sl_args_push(a, "driver=qcow2,node-name=disk,file=disk-file", err) < 0 ||
      sl_args_push(a, "-device", err) < 0 ||
      sl_args_push(a, "virtio-blk-device,drive=disk,id=disk0", err) < 0)
    return -err->code;
  return 0;
}

/* Free page reporting: the guest tells QEMU which pages it freed, and QEMU
 * punches them out of the RAM file (fallocate on a shared file backend). */
static int push_balloon(sl_args *a, sl_error *err) {
  if (sl_args_push(a, "-device", err) < 0 ||
      sl_args_push(a, "virtio-balloon-device,id=balloon0,free-page-reporting=on", err) < 0)
    return -err->code;
  return 0;
}

static int push_agent_ports(const sl_vm_spec *s, sl_args *a, sl_error *err) {
  if (sl_args_push(a, "-device", err) < 0 ||
      sl_args_pushf(a, err, "virtio-serial-device,id=vser0,max_ports=%u",
                    s->agent_ports + 1) < 0)
    return -err->code;
  for (unsigned i = 0; i < s->agent_ports; i++) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "socket,id=agent%u,path=", i);
    if (sl_args_push(a, "-chardev", err) < 0 ||
        push_path_option(a, prefix, s->agent_sockets[i], ",server=on,wait=off", err) < 0 ||
        sl_args_push(a, "-device", err) < 0 ||
        sl_args_pushf(a, err,
                      "virtserialport,bus=vser0.0,nr=%u,chardev=agent%u,id=agentport%u,name=%s%u",
                      i + 1, i, i, SL_VM_AGENT_PORT_PREFIX, i) < 0)
      return -err->code;
  }
  return 0;
}

static int push_control(const sl_vm_spec *s, sl_args *a, sl_error *err) {
  if (sl_args_push(a, "-chardev", err) < 0 ||
      push_path_option(a, "socket,id=qmp,path=", s->qmp_socket, ",server=on,wait=off",
                       err) < 0 ||
      sl_args_push(a, "-mon", err) < 0 || sl_args_push(a, "chardev=qmp,mode=control", err) < 0)
    return -err->code;
  /* QEMU serves one client per QMP socket: operations use the first, and
   * a process that watches events (SHUTDOWN, STOP, RESUME) the second. */
  if (s->events_socket != NULL &&
      (sl_args_push(a, "-chardev", err) < 0 ||
       push_path_option(a, "socket,id=qmp-events,path=", s->events_socket,
                        ",server=on,wait=off", err) < 0 ||
       sl_args_push(a, "-mon", err) < 0 ||
       sl_args_push(a, "chardev=qmp-events,mode=control", err) < 0))
    return -err->code;
  if (s->pidfile != NULL &&
      (sl_args_push(a, "-pidfile", err) < 0 || sl_args_push(a, s->pidfile, err) < 0))
    return -err->code;
  if (s->daemonize && sl_args_push(a, "-daemonize", err) < 0) return -err->code;
  if (s->incoming_defer &&
      (sl_args_push(a, "-incoming", err) < 0 || sl_args_push(a, "defer", err) < 0))
    return -err->code;
  return 0;
}

int sl_vm_argv_build(const sl_vm_spec *spec, sl_args *out, sl_error *err) {
  int rc = validate(spec, err);
  if (rc == 0) rc = push_machine(spec, out, err);
  if (rc == 0) rc = push_boot(spec, out, err);
  if (rc == 0) rc = push_console(spec, out, err);
  if (rc == 0) rc = push_disk(spec, out, err);
  if (rc == 0) rc = push_agent_ports(spec, out, err);
  if (rc == 0) rc = push_balloon(out, err);
  if (rc == 0) rc = push_control(spec, out, err);
  if (rc < 0) sl_args_free(out);
  return rc;
}

/* The kernel command line. */

typedef struct line {
  char *buf;
  size_t size, len;
  bool full;
} line;

static void line_put(line *l, const char *text, size_t n) {
  if (l->full || l->len + n + 1 > l->size || l->len + n > SL_VM_CMDLINE_MAX) {
    l->full = true;
    return;
  }
  memcpy(l->buf + l->len, text, n);
  l->len += n;
  l->buf[l->len] = '\0';
}

static void line_puts(line *l, const char *text) { line_put(l, text, strlen(text)); }

/* Append `data` in base64 (RFC 4648, with padding). */
static void line_base64(line *l, const unsigned char *data, size_t n) {
  static const char digits[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)data[i] << 16;
    if (i + 1 < n) v |= (unsigned)data[i + 1] << 8;
    if (i + 2 < n) v |= data[i + 2];
    char quad[4] = {digits[v >> 18 & 63], digits[v >> 12 & 63],
                    i + 1 < n ? digits[v >> 6 & 63] : '=', i + 2 < n ? digits[v & 63] : '='};
    line_put(l, quad, 4);
  }
}

static int check_env(const char *const *env, size_t *bytes, sl_error *err) {
  *bytes = 0;
  for (const char *const *e = env; e != NULL && *e != NULL; e++) {
    const char *eq = strchr(*e, '=');
    if (eq == NULL || eq == *e)
      return sl_error_set(err, EINVAL, "invalid env entry (expected NAME=value): %s", *e);
    *bytes += strlen(*e) + 1;
  }
  return 0;
}

/* The entries, each ended by a NUL byte, as one buffer. */
static unsigned char *join_env(const char *const *env, size_t bytes) {
  unsigned char *joined = malloc(bytes ? bytes : 1), *p = joined;
  for (const char *const *e = env; joined != NULL && e != NULL && *e != NULL; e++) {
    size_t n = strlen(*e) + 1;
    memcpy(p, *e, n);
    p += n;
  }
  return joined;
}

static void put_machine_options(line *l, const sl_vm_cmdline_spec *spec) {
  char part[96];
  /* panic=-1 reboots at once on a panic, which -no-reboot turns into
   * QEMU's exit. pci=off: microvm has no PCI bus. */
  snprintf(part, sizeof part, "console=ttyS0 quiet panic=-1 pci=off rw sandlot.ports=%u",
           spec->agent_ports);
  line_puts(l, part);
  /* Under TCG the guest can skip TSC calibration, which hangs the kernel
   * when the loaded host delays the emulated PIT (seen with Debian's 6.1
   * cloud kernel). */
  if (spec->tsc_khz > 0) {
    snprintf(part, sizeof part, " tsc_early_khz=%u tsc=reliable no_timer_check", spec->tsc_khz);
    line_puts(l, part);
  }
}

static int put_agent_defaults(line *l, const sl_vm_cmdline_spec *spec, size_t env_bytes,
                              sl_error *err) {
  if (env_bytes > 0) {
    unsigned char *joined = join_env(spec->env, env_bytes);
    if (joined == NULL) return sl_error_set(err, ENOMEM, "out of memory");
    line_puts(l, " sandlot.env=");
    line_base64(l, joined, env_bytes);
    free(joined);
  }
  if (spec->cwd != NULL) {
    line_puts(l, " sandlot.cwd=");
    line_base64(l, (const unsigned char *)spec->cwd, strlen(spec->cwd));
  }
  return 0;
}

int sl_vm_cmdline_build(const sl_vm_cmdline_spec *spec, char *buf, size_t size, sl_error *err) {
  size_t env_bytes = 0;
  if (check_env(spec->env, &env_bytes, err) < 0) return -EINVAL;
  if (spec->cwd != NULL && spec->cwd[0] != '/')
    return sl_error_set(err, EINVAL, "invalid cwd: %s (expected an absolute path)", spec->cwd);
  line l = {.buf = buf, .size = size};
  put_machine_options(&l, spec);
  if (put_agent_defaults(&l, spec, env_bytes, err) < 0) return -err->code;
  if (l.full)
    return sl_error_set(err, EINVAL,
                        "env and cwd do not fit on the VM's kernel command line (at most %d "
                        "bytes in all, about %d bytes of env)", SL_VM_CMDLINE_MAX,
                        (SL_VM_CMDLINE_MAX - 200) * 3 / 4);
  return 0;
}
