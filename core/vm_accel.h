/* Choice of the QEMU accelerator for microVMs.
 *
 * KVM is used only when the CPU advertises hardware virtualization (vmx or
 * svm in /proc/cpuinfo), /dev/kvm opens and KVM_CREATE_VM succeeds. A
 * /dev/kvm without those flags (a paravirtual or nested implementation
 * such as PVM) runs tiny guests but not stock Linux kernels, so it counts
 * as no KVM. SANDLOT_VM_ACCEL=kvm|tcg overrides the probe. */
#ifndef SANDLOT_VM_ACCEL_H
#define SANDLOT_VM_ACCEL_H

#include <stdbool.h>

#include "error.h"
#include "vm_argv.h"

/* True when a "flags" line of /proc/cpuinfo text lists vmx or svm. */
bool sl_vm_cpuinfo_has_virt(const char *cpuinfo);

/* Parse "kvm" or "tcg" into `accel`. Returns -EINVAL for anything else. */
int sl_vm_accel_parse(const char *name, sl_vm_accel *accel, sl_error *err);

/* Open /dev/kvm and create (then close) a VM. Returns 0 or a negative errno
 * with the failing step in `err`. */
int sl_vm_kvm_probe(sl_error *err);

/* Choose the accelerator: SANDLOT_VM_ACCEL when set (an invalid value is
 * -EINVAL), else KVM when the probe above passes, else TCG. */
int sl_vm_accel_choose(sl_vm_accel *accel, sl_error *err);

/* The host's TSC frequency in kHz, measured against CLOCK_MONOTONIC_RAW
 * over about 20 ms; 0 when it cannot be measured (not x86). Under TCG the
 * guest's TSC counts at the host's rate, and a guest kernel that has to
 * calibrate it against the emulated PIT on a loaded host can fail and hang,
 * so sandlot passes this value as tsc_early_khz=. */
unsigned sl_vm_host_tsc_khz(void);

#endif
