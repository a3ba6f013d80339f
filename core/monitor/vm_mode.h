/* sandlot-monitor --backend vm: the monitor of a VM sandbox.
 *
 * The creator starts it detached, like the monitor of a process sandbox,
 * as
 *
 *     sandlot-monitor --home HOME --id ID --ready-fd 3 [--creator-pidfd 4] --backend vm
 *
 * and it reads sandboxes/<id>/vm-monitor.json (vm_monitor_config.h). It
 * is a child subreaper, so the QEMU it starts (which daemonizes: its
 * parents exit) becomes its child. It boots, forks or resumes the VM,
 * marks the record running with QEMU as init_pid and itself as monitor,
 * and writes "ok" or "err ENAME message" to the ready fd. Then it serves
 * monitor.sock (kill, status, set_timeout, pause, pause files, rollback
 * SNAPSHOT) and enforces the timeout (kill, pause or pause_fs). It kills
 * the VM when the creator exits (auto_kill). It watches QEMU through
 * SIGCHLD for its exit and through events.sock for the SHUTDOWN reason.
 * When QEMU
 * exits it records the exit status and the reason, releases the live RAM
 * file, the disk overlays and the sockets, and exits. After a pause it
 * exits leaving the paused files. */
#ifndef SANDLOT_MONITOR_VM_MODE_H
#define SANDLOT_MONITOR_VM_MODE_H

/* Entry point for --backend vm; returns the exit code. */
int sl_vm_monitor_main(int argc, char **argv);

#endif
