#include "vm_accel.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* True when `word` occurs in `list` as a whole space-separated word. */
static bool has_word(const char *list, size_t len, const char *word) {
  size_t wlen = strlen(word);
  for (size_t i = 0; i + wlen <= len; i++) {
    bool starts = i == 0 || list[i - 1] == ' ' || list[i - 1] == '\t';
    bool ends = i + wlen == len || list[i + wlen] == ' ' || list[i + wlen] == '\n';
    if (starts && ends && memcmp(list + i, word, wlen) == 0) return true;
  }
  return false;
}

bool sl_vm_cpuinfo_has_virt(const char *cpuinfo) {
  for (const char *line = cpuinfo; line != NULL && *line != '\0';) {
    const char *end = strchr(line, '\n');
    size_t len = end ? (size_t)(end - line) : strlen(line);
    if (strncmp(line, "flags", 5) == 0) {
      const char *colon = memchr(line, ':', len);
      if (colon != NULL) {
        size_t off = (size_t)(colon + 1 - line);
        if (has_word(colon + 1, len - off, "vmx") || has_word(colon + 1, len - off, "svm"))
          return true;
      }
    }
    line = end ? end + 1 : NULL;
  }
  return false;
}

int sl_vm_accel_parse(const char *name, sl_vm_accel *accel, sl_error *err) {
  if (name != NULL && strcmp(name, "kvm") == 0) {
    *accel = SL_VM_ACCEL_KVM;
    return 0;
  }
  if (name != NULL && strcmp(name, "tcg") == 0) {
    *accel = SL_VM_ACCEL_TCG;
    return 0;
  }
  return sl_error_set(err, EINVAL, "invalid VM accelerator: \"%s\" (expected kvm or tcg)",
                      name ? name : "");
}

int sl_vm_kvm_probe(sl_error *err) {
  int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) return sl_error_errno(err, errno, "open /dev/kvm");
  int version = ioctl(fd, KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION) {
    close(fd);
    return sl_error_set(err, ENODEV, "unsupported KVM API version: %d", version);
  }
  int vm = ioctl(fd, KVM_CREATE_VM, 0);
  if (vm < 0) {
    int e = errno;
    close(fd);
    return sl_error_errno(err, e, "KVM_CREATE_VM");
  }
  close(vm);
  close(fd);
  return 0;
}

static char *read_cpuinfo(void) {
  FILE *f = fopen("/proc/cpuinfo", "re");
  if (f == NULL) return NULL;
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  while (buf != NULL) {
    size_t n = fread(buf + len, 1, cap - len - 1, f);
    len += n;
    if (n == 0) break;
    if (len + 1 == cap) {
      char *grown = realloc(buf, cap * 2);
      if (grown == NULL) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = grown;
      cap *= 2;
    }
  }
  fclose(f);
  if (buf != NULL) buf[len] = '\0';
  return buf;
}

int sl_vm_accel_choose(sl_vm_accel *accel, sl_error *err) {
  const char *forced = getenv("SANDLOT_VM_ACCEL");
  if (forced != NULL && forced[0] != '\0') {
    if (sl_vm_accel_parse(forced, accel, err) < 0)
      return sl_error_wrap(err, "SANDLOT_VM_ACCEL");
    return 0;
  }
  char *cpuinfo = read_cpuinfo();
  bool virt = cpuinfo != NULL && sl_vm_cpuinfo_has_virt(cpuinfo);
  free(cpuinfo);
  sl_error probe = {0};
  if (virt && sl_vm_kvm_probe(&probe) == 0) {
    *accel = SL_VM_ACCEL_KVM;
    return 0;
  }
  if (virt)
    SL_INFO("vm.accel", "accel=tcg reason=\"%s\"", probe.msg);
  else
    SL_DEBUG("vm.accel", "accel=tcg reason=\"no vmx or svm in /proc/cpuinfo\"");
  *accel = SL_VM_ACCEL_TCG;
  return 0;
}

static double monotonic_raw_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

unsigned sl_vm_host_tsc_khz(void) {
#if defined(__x86_64__) || defined(__i386__)
  double t0 = monotonic_raw_ns();
  unsigned long long c0 = __builtin_ia32_rdtsc();
  struct timespec nap = {.tv_sec = 0, .tv_nsec = 20 * 1000 * 1000};
  while (nanosleep(&nap, &nap) < 0 && errno == EINTR) {
  }
  unsigned long long c1 = __builtin_ia32_rdtsc();
  double t1 = monotonic_raw_ns();
  if (t1 <= t0 || c1 <= c0) return 0;
  return (unsigned)((double)(c1 - c0) / (t1 - t0) * 1e6);
#else
  return 0;
#endif
}
