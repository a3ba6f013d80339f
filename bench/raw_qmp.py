#!/usr/bin/python3
"""The raw QEMU baseline of the benchmark: the snapshot, fork, pause,
resume and rollback of a microVM done with QMP commands sent by a plain
script, the way sandlot's VM backend does them (docs/ARCHITECTURE.md,
VM backend).

  raw_qmp.py boot ARGV_FILE SANDLOT_VM_DIR SANDLOT_RAM_FILE VM_DIR WORKLOAD MB
  raw_qmp.py snapshot VM_DIR OUT_DIR
  raw_qmp.py fork ARGV_FILE SANDLOT_FORK_DIR SANDLOT_SNAPSHOT_DIR SNAPSHOT_DIR TARGET COUNT
  raw_qmp.py pause VM_DIR
  raw_qmp.py resume VM_DIR
  raw_qmp.py rollback VM_DIR SNAPSHOT_DIR
  raw_qmp.py destroy TARGET

boot: boot a VM of the script's own in VM_DIR with the command line
sandlot booted SANDLOT_VM_DIR with (ARGV_FILE), its folder and RAM file
replaced, on a new overlay of the same base disk. Its RAM goes to a file
on /dev/shm, as sandlot's does. Then start the workload
(bench/workload.py) with MB MiB in it.

snapshot: stop the script's VM in VM_DIR and switch its disk: the active
overlay gets a second name, VM_DIR/layer-<n>.qcow2, and the VM continues
on a new overlay backed by it (blockdev-add, blockdev-snapshot). Then
copy its RAM file (sparse) into OUT_DIR/ram, migrate the device state
into OUT_DIR/state with x-ignore-shared, and continue it.
OUT_DIR/disk.qcow2 is a symbolic link to the layer, which stays in
VM_DIR because the VM reads through it.

fork: start COUNT QEMUs at once from the snapshot in SNAPSHOT_DIR. Each
one's command line is sandlot's own fork command line (ARGV_FILE, one
argument per line) with sandlot's fork folder and snapshot folder
replaced by the fork's folder under TARGET and SNAPSHOT_DIR. Each gets a
qcow2 overlay (qemu-img) on the snapshot's disk, loads the state with
migrate-incoming, continues, and runs /bin/true through the guest's agent
(the only way into the guest), which is its first exec result.

pause stops the script's VM, saves its RAM and state into VM_DIR/pause
and ends QEMU. resume brings it back from there; rollback ends it and
starts it again on a new overlay of a snapshot made by `snapshot` of
it. resume and rollback time until /bin/true has run through the agent.

destroy: kill the QEMUs under TARGET (or of the VM in TARGET) and remove
it and their live RAM files.

Output: key=value lines on stdout, times in milliseconds of
CLOCK_MONOTONIC.
"""
import errno
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

QMP_TIMEOUT_S = 60
MAX_BANDWIDTH = 1 << 40  # QEMU's default of 128 MiB/s applies to files too
STATE_FD_NAME = "raw-state"

# The agent protocol (core/proto.h).
SYNC_MAGIC = b"SLSYNC\r\n"
MSG_EXEC, MSG_ERROR, MSG_EXIT = 0x10, 0x81, 0x82
F_ARGV, F_STREAM, F_EXIT_CODE = 8, 15, 22


def now_ms():
    return time.monotonic_ns() / 1e6


class Qmp:
    """A blocking QMP client on a unix socket."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(QMP_TIMEOUT_S)
        self.sock.connect(path)
        self.reader = self.sock.makefile("rb")
        self.events = []
        self.read_message()  # the greeting
        self.execute("qmp_capabilities")

    def read_message(self):
        line = self.reader.readline()
        if not line:
            raise RuntimeError("QMP connection closed")
        return json.loads(line)

    def execute(self, command, arguments=None, fds=None):
        request = {"execute": command}
        if arguments is not None:
            request["arguments"] = arguments
        data = json.dumps(request).encode() + b"\n"
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.sendall(data)
        while True:
            message = self.read_message()
            if "event" in message:
                self.events.append(message)
            elif "error" in message:
                raise RuntimeError("%s failed: %s" % (command, message["error"]))
            elif "return" in message:
                return message["return"]

    def wait_migration(self):
        while True:
            message = self.events.pop(0) if self.events else self.read_message()
            if message.get("event") != "MIGRATION":
                continue
            status = message["data"]["status"]
            if status == "completed":
                return
            if status in ("failed", "cancelled"):
                raise RuntimeError("migration " + status)

    def prepare_migration(self, ignore_shared):
        self.execute("migrate-set-capabilities", {"capabilities": [
            {"capability": "events", "state": True},
            {"capability": "x-ignore-shared", "state": ignore_shared}]})
        self.execute("migrate-set-parameters", {"max-bandwidth": MAX_BANDWIDTH})

    def migrate_fd(self, fd, incoming):
        self.execute("getfd", {"fdname": STATE_FD_NAME}, fds=[fd])
        self.execute("migrate-incoming" if incoming else "migrate",
                     {"uri": "fd:" + STATE_FD_NAME})
        self.wait_migration()
        # cont fails while the run state is still finish-migrate.
        while not incoming and self.execute("query-status")["status"] == "finish-migrate":
            time.sleep(0.001)

    def close(self):
        self.sock.close()


def copy_range(fin, fout, start, end):
    """Copy bytes start..end with copy_file_range, or with sendfile where
    the kernel does not copy between the two file systems (tmpfs to ext4
    is EXDEV since Linux 5.19)."""
    position = start
    while position < end:
        try:
            n = os.copy_file_range(fin, fout, end - position, position, position)
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            os.lseek(fout, position, os.SEEK_SET)
            n = os.sendfile(fout, fin, position, end - position)
        if n == 0:
            return  # the source shrank
        position += n


def copy_sparse(src, dst):
    """Copy the data ranges of src into a new dst of the same size."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        size = os.fstat(fin.fileno()).st_size
        offset = 0
        while offset < size:
            try:
                data = os.lseek(fin.fileno(), offset, os.SEEK_DATA)
            except OSError as error:
                if error.errno == errno.ENXIO:
                    break  # only a hole is left
                raise
            hole = os.lseek(fin.fileno(), data, os.SEEK_HOLE)
            copy_range(fin.fileno(), fout.fileno(), data, hole)
            offset = hole
        os.ftruncate(fout.fileno(), size)


# ---- the root disk ------------------------------------------------------------

DISK_FILE_OPTION = "driver=file,node-name=disk-file,filename="


def disk_of(argv):
    """Return the path of the root disk's overlay (the file of the
    disk-file blockdev) in a QEMU command line of sandlot's."""
    for arg in argv:
        if arg.startswith(DISK_FILE_OPTION):
            return arg[len(DISK_FILE_OPTION):]
    raise RuntimeError("no disk-file blockdev in the QEMU command line")


def with_disk(argv, path):
    return [DISK_FILE_OPTION + path if arg.startswith(DISK_FILE_OPTION) else arg
            for arg in argv]


def qemu_img_info(disk):
    info = subprocess.run(["qemu-img", "info", "-U", "--output=json", disk], check=True,
                          capture_output=True, text=True).stdout
    return json.loads(info)


def backing_file(disk):
    data = qemu_img_info(disk)
    return data.get("full-backing-filename") or data["backing-filename"]


def make_overlay(backing, path, size=None):
    """Write a qcow2 overlay at path on backing. With a size, backing
    need not exist yet (qemu-img -u)."""
    argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", backing]
    if size is not None:
        argv += ["-u", path, str(size)]
    else:
        argv.append(path)
    subprocess.run(argv, check=True)


def read_disk(vm_dir):
    """Read the VM's disk record: active (the overlay QEMU writes to),
    node (its block node name) and seq (the number of the latest
    overlay)."""
    with open(os.path.join(vm_dir, "disk.json")) as f:
        return json.load(f)


def write_disk(vm_dir, record):
    with open(os.path.join(vm_dir, "disk.json"), "w") as f:
        json.dump(record, f)


# ---- snapshot ---------------------------------------------------------------

def switch_disk(qmp, vm_dir, disk, frozen, next_path, seq):
    """While the guest is stopped: give the active overlay the second name
    frozen and put the overlay next_path (backed by frozen) on top of it,
    as sandlot's disk switch does."""
    os.link(disk["active"], frozen)
    node = "disk-%d" % seq
    qmp.execute("blockdev-add", {"driver": "qcow2", "node-name": node,
                                 "file": {"driver": "file", "filename": next_path},
                                 "backing": None})
    qmp.execute("blockdev-snapshot", {"node": disk["node"], "overlay": node})
    write_disk(vm_dir, {"active": next_path, "node": node, "seq": seq})


def capture(qmp, vm_dir, out_dir, times):
    """Save the RAM and the device state of the stopped guest, recording
    when each part ended in times."""
    copy_sparse(live_ram_path(vm_dir), os.path.join(out_dir, "ram"))
    times["ram"] = now_ms()
    state = os.open(os.path.join(out_dir, "state"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        qmp.migrate_fd(state, False)
    finally:
        os.close(state)
    times["state"] = now_ms()


def fsync_paths(paths):
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def snapshot(vm_dir, out_dir):
    start = now_ms()
    os.makedirs(out_dir)
    disk = read_disk(vm_dir)
    seq = disk["seq"] + 1
    frozen = os.path.join(vm_dir, "layer-%d.qcow2" % seq)
    next_path = os.path.join(vm_dir, "disk-%d.qcow2" % seq)
    # The new overlay's header does not depend on the frozen data, so the
    # script writes it before the pause (sandlot writes it in the pause,
    # without starting a process).
    make_overlay(frozen, next_path, qemu_img_info(disk["active"])["virtual-size"])

    qmp = Qmp(os.path.join(vm_dir, "qmp.sock"))
    qmp.prepare_migration(True)
    times = {"stop": now_ms()}
    qmp.execute("stop")
    try:
        switch_disk(qmp, vm_dir, disk, frozen, next_path, seq)
        times["disk"] = now_ms()
        capture(qmp, vm_dir, out_dir, times)
    finally:
        qmp.execute("cont")  # a failed capture leaves the guest running too
    times["cont"] = now_ms()
    qmp.close()

    os.symlink(frozen, os.path.join(out_dir, "disk.qcow2"))
    # sandlot syncs the snapshot's files before it commits the snapshot.
    fsync_paths([frozen, os.path.join(out_dir, "ram"), os.path.join(out_dir, "state"),
                 vm_dir, out_dir])
    end = now_ms()
    print("pause_ms=%.3f disk_ms=%.3f ram_ms=%.3f state_ms=%.3f total_ms=%.3f disk=%s" % (
        times["cont"] - times["stop"], times["disk"] - times["stop"], times["ram"] - times["disk"],
        times["state"] - times["ram"], end - start, frozen))


# ---- forks -----------------------------------------------------------------

def agent_frame(msg_type, request_id, fields):
    body = b"".join(struct.pack("<BI", key, len(value)) + value for key, value in fields)
    return struct.pack("<IBI", 5 + len(body), msg_type, request_id) + body


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise RuntimeError("agent connection closed")
        data += chunk
    return data


def agent_sync(sock):
    """Start a session on the agent's stream port: send the sync marker
    every 250 ms until the agent echoes it (a guest that has not opened
    its port yet, or a partial frame of an earlier host, can swallow
    one). Returns the bytes that followed the echo."""
    marker = struct.pack("<I", 0) + SYNC_MAGIC + os.urandom(16)
    deadline = time.monotonic() + QMP_TIMEOUT_S
    seen = b""
    sock.settimeout(0.25)
    while marker not in seen:
        if time.monotonic() > deadline:
            raise RuntimeError("the agent did not answer the sync marker")
        sock.sendall(marker)
        try:
            while marker not in seen:
                chunk = sock.recv(4096)
                if not chunk:
                    raise RuntimeError("agent connection closed")
                seen = seen[-len(marker):] + chunk
        except socket.timeout:
            continue
    sock.settimeout(QMP_TIMEOUT_S)
    return seen[seen.index(marker) + len(marker):]


def agent_exec(path, argv):
    """Run argv through the agent's stream port at path and return its
    exit code once it has exited."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(QMP_TIMEOUT_S)
    sock.connect(path)
    buffer = agent_sync(sock)

    fields = [(F_ARGV, arg.encode()) for arg in argv] + [(F_STREAM, struct.pack("<q", 1))]
    sock.sendall(agent_frame(MSG_EXEC, 1, fields))
    while True:
        while len(buffer) < 4:
            buffer += read_exact(sock, 4 - len(buffer))
        (length,) = struct.unpack("<I", buffer[:4])
        if length == 0:
            # The echo of a sync marker sent again before the first echo.
            marker = 4 + len(SYNC_MAGIC) + 16
            while len(buffer) < marker:
                buffer += read_exact(sock, marker - len(buffer))
            buffer = buffer[marker:]
            continue
        while len(buffer) < 4 + length:
            buffer += read_exact(sock, 4 + length - len(buffer))
        frame, buffer = buffer[4:4 + length], buffer[4 + length:]
        msg_type, request_id = struct.unpack("<BI", frame[:5])
        if request_id != 1 or msg_type not in (MSG_EXIT, MSG_ERROR):
            continue
        sock.close()
        if msg_type == MSG_ERROR:
            raise RuntimeError("%s failed to start in the guest" % argv[0])
        reply = parse_fields(frame[5:])
        return struct.unpack("<q", reply.get(F_EXIT_CODE, b"\xff" * 8))[0]


def agent_run_true(path):
    """Run /bin/true through the agent's stream port at path."""
    if agent_exec(path, ["/bin/true"]) != 0:
        raise RuntimeError("/bin/true failed in the guest")


def parse_fields(body):
    fields, pos = {}, 0
    while pos < len(body):
        key, length = struct.unpack("<BI", body[pos:pos + 5])
        fields[key] = body[pos + 5:pos + 5 + length]
        pos += 5 + length
    return fields


def start_fork(argv, snapshot_dir, fork_dir, result):
    """Start one fork and store in result the CLOCK_MONOTONIC times (ms)
    at which it started, QEMU listened, QEMU replied to cont, and /bin/true
    had run. The step under way is in result["step"]."""
    result["start"] = now_ms()
    result["step"] = "qemu-img create"
    os.makedirs(fork_dir)
    make_overlay(os.path.realpath(os.path.join(snapshot_dir, "disk.qcow2")), disk_of(argv))
    result["step"] = "QEMU start"
    subprocess.run(argv, check=True)  # -daemonize: returns once QEMU listens
    launched = now_ms()
    result["step"] = "incoming migration"
    qmp = Qmp(os.path.join(fork_dir, "qmp.sock"))
    qmp.prepare_migration(True)
    state = os.open(os.path.join(snapshot_dir, "state"), os.O_RDONLY)
    try:
        qmp.migrate_fd(state, True)
    finally:
        os.close(state)
    result["step"] = "cont"
    qmp.execute("cont")
    running = now_ms()
    qmp.close()
    result["step"] = "/bin/true through the agent"
    agent_run_true(os.path.join(fork_dir, "agent-0.sock"))
    result.update(launched=launched, running=running, done=now_ms())


def fork_one(argv, snapshot_dir, fork_dir, result):
    """Run start_fork as a thread's target, storing a failure in result["error"]."""
    try:
        start_fork(argv, snapshot_dir, fork_dir, result)
    except Exception as error:  # reported by fork() with the fork's number
        result["error"] = "%s: %s" % (type(error).__name__, error)


def fork_argv(template, sandlot_fork_dir, sandlot_snapshot_dir, snapshot_dir, fork_dir):
    return [arg.replace(sandlot_fork_dir, fork_dir).replace(sandlot_snapshot_dir, snapshot_dir)
            for arg in template]


def qemu_pss_kib(fork_dir):
    with open(os.path.join(fork_dir, "qemu.pid")) as pidfile:
        pid = int(pidfile.read())
    with open("/proc/%d/smaps_rollup" % pid) as rollup:
        for line in rollup:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return -1


def fork(argv_file, sandlot_fork_dir, sandlot_snapshot_dir, snapshot_dir, target, count):
    with open(argv_file) as f:
        template = [line for line in f.read().split("\n") if line]
    os.makedirs(target, exist_ok=True)
    results = [dict() for _ in range(count)]
    threads = []
    start = now_ms()
    for i in range(count):
        fork_dir = os.path.join(target, "fork-%d" % (i + 1))
        argv = fork_argv(template, sandlot_fork_dir, sandlot_snapshot_dir, snapshot_dir,
                         fork_dir)
        thread = threading.Thread(target=fork_one, args=(argv, snapshot_dir, fork_dir, results[i]))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    for i, r in enumerate(results):
        if "done" not in r:
            sys.exit("raw_qmp.py: fork %d failed during %s: %s" % (
                i + 1, r.get("step", "start"), r.get("error", "no result")))
    for i, r in enumerate(results):
        fork_dir = os.path.join(target, "fork-%d" % (i + 1))
        print("fork=%d start_ms=%.3f launch_ms=%.3f running_ms=%.3f first_exec_ms=%.3f "
              "pss_kib=%d" % (i + 1, r["start"] - start, r["launched"] - start,
                              r["running"] - start, r["done"] - start, qemu_pss_kib(fork_dir)))
    print("total_ms=%.3f running_ms=%.3f" % (max(r["done"] for r in results) - start,
                                             max(r["running"] for r in results) - start))


# ---- a raw VM: boot, pause, resume, rollback ---------------------------------

def live_ram_path(vm_dir):
    return "/dev/shm/sandlot-bench-raw-%s.ram" % os.path.basename(vm_dir)


def raw_vm_argv(vm_dir):
    with open(os.path.join(vm_dir, "argv")) as f:
        return [line for line in f.read().split("\n") if line]


def launch(vm_dir, incoming):
    """Start the VM's QEMU on its active overlay, whose block node is then
    "disk" again."""
    disk = read_disk(vm_dir)
    argv = with_disk(raw_vm_argv(vm_dir), disk["active"])
    subprocess.run(argv + (["-incoming", "defer"] if incoming else []),
                   check=True)  # -daemonize: returns once QEMU listens
    disk["node"] = "disk"
    write_disk(vm_dir, disk)


def load(vm_dir, state_path):
    """Load a state file into the incoming QEMU of vm_dir and continue it."""
    qmp = Qmp(os.path.join(vm_dir, "qmp.sock"))
    qmp.prepare_migration(True)
    state = os.open(state_path, os.O_RDONLY)
    try:
        qmp.migrate_fd(state, True)
    finally:
        os.close(state)
    qmp.execute("cont")
    qmp.close()


def boot(argv_file, sandlot_dir, sandlot_ram, vm_dir, workload_file, workload_mib):
    """Boot a VM of its own with the command line sandlot booted
    sandlot_dir with, its folder and RAM file replaced, on a new overlay
    of the same base disk (read from sandlot's overlay, so before
    sandlot's first snapshot). Then start the workload in workload_file
    holding workload_mib MiB and wait until it is ready."""
    with open(argv_file) as f:
        template = [line for line in f.read().split("\n") if line]
    ram = live_ram_path(vm_dir)
    argv = [arg.replace(sandlot_dir, vm_dir).replace(sandlot_ram, ram) for arg in template]
    os.makedirs(vm_dir)
    with open(os.path.join(vm_dir, "argv"), "w") as f:
        f.write("\n".join(argv) + "\n")
    start = now_ms()
    disk = disk_of(argv)
    make_overlay(backing_file(disk_of(template)), disk)
    write_disk(vm_dir, {"active": disk, "node": "disk", "seq": 0})
    launch(vm_dir, False)
    agent = os.path.join(vm_dir, "agent-0.sock")
    agent_run_true(agent)
    boot_ms = now_ms() - start
    with open(workload_file) as f:
        script = f.read()
    agent_exec(agent, ["/bin/sh", "-c", 'python3 -c "$0" "$1" </dev/null >/dev/null 2>&1 &',
                       script, workload_mib])
    deadline = time.monotonic() + 300
    while agent_exec(agent, ["/bin/test", "-e", "/tmp/workload.ready"]) != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the workload in the raw VM did not report ready")
        time.sleep(0.5)
    print("boot_ms=%.3f ram=%s" % (boot_ms, ram))


def process_gone(pid):
    """Tell whether pid has exited. A QEMU that daemonized is reaped by
    whichever ancestor adopted it, maybe late, so a zombie counts as
    gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def qemu_pid(vm_dir):
    """The pid of the VM's QEMU; raises with the end of the console log
    when QEMU has exited (it removes its pid file then)."""
    try:
        with open(os.path.join(vm_dir, "qemu.pid")) as f:
            return int(f.read())
    except FileNotFoundError:
        with open(os.path.join(vm_dir, "console.log"), errors="replace") as f:
            tail = f.read()[-600:]
        raise RuntimeError("QEMU of %s has exited; console: %s" % (vm_dir, tail)) from None


def wait_exit(pid):
    while not process_gone(pid):
        time.sleep(0.001)


def pause(vm_dir):
    """Stop the VM, save its RAM and device state into vm_dir/pause, end
    QEMU and release the live RAM file."""
    out = os.path.join(vm_dir, "pause")
    pid = qemu_pid(vm_dir)  # QEMU removes its pid file when it quits
    subprocess.run(["rm", "-rf", out], check=True)
    os.makedirs(out)
    start = now_ms()
    qmp = Qmp(os.path.join(vm_dir, "qmp.sock"))
    qmp.prepare_migration(True)
    qmp.execute("stop")
    copy_sparse(live_ram_path(vm_dir), os.path.join(out, "ram"))
    state = os.open(os.path.join(out, "state"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        qmp.migrate_fd(state, False)
    finally:
        os.close(state)
    try:
        qmp.execute("quit")
    except (RuntimeError, OSError):
        pass  # QEMU may close the socket before it replies
    qmp.close()
    wait_exit(pid)
    os.unlink(live_ram_path(vm_dir))
    print("pause_ms=%.3f" % (now_ms() - start))


def resume(vm_dir):
    """Bring a paused VM back: RAM to a live file, an incoming QEMU, the
    state, cont, and /bin/true through the agent."""
    start = now_ms()
    paused = os.path.join(vm_dir, "pause")
    copy_sparse(os.path.join(paused, "ram"), live_ram_path(vm_dir))
    launch(vm_dir, True)
    load(vm_dir, os.path.join(paused, "state"))
    agent_run_true(os.path.join(vm_dir, "agent-0.sock"))
    print("resume_ms=%.3f" % (now_ms() - start))


def rollback(vm_dir, snapshot_dir):
    """Put the VM back to the snapshot in snapshot_dir: end QEMU, a new
    overlay on the snapshot's disk, its RAM to a live file, load, cont,
    and /bin/true through the agent."""
    start = now_ms()
    pid = qemu_pid(vm_dir)
    os.kill(pid, signal.SIGKILL)
    wait_exit(pid)
    disk = read_disk(vm_dir)
    os.unlink(disk["active"])  # the frozen layers keep their own names
    seq = disk["seq"] + 1
    overlay = os.path.join(vm_dir, "disk-%d.qcow2" % seq)
    make_overlay(os.path.realpath(os.path.join(snapshot_dir, "disk.qcow2")), overlay)
    write_disk(vm_dir, {"active": overlay, "node": "disk", "seq": seq})
    copy_sparse(os.path.join(snapshot_dir, "ram"), live_ram_path(vm_dir))
    launch(vm_dir, True)
    load(vm_dir, os.path.join(snapshot_dir, "state"))
    agent_run_true(os.path.join(vm_dir, "agent-0.sock"))
    print("rollback_ms=%.3f" % (now_ms() - start))


def destroy(target):
    """Kill the QEMUs in target (a folder of forks, or a raw VM folder)
    and remove it and the live RAM files of its VMs."""
    if not os.path.isdir(target):
        return
    folders = [target] + [os.path.join(target, name) for name in os.listdir(target)]
    for folder in folders:
        pidfile = os.path.join(folder, "qemu.pid")
        try:
            with open(pidfile) as f:
                pid = int(f.read())
            os.kill(pid, signal.SIGKILL)
            while not process_gone(pid):
                time.sleep(0.01)
        except (OSError, ValueError):
            pass
        if os.path.exists(os.path.join(folder, "argv")):
            try:
                os.unlink(live_ram_path(folder))
            except FileNotFoundError:
                pass
    subprocess.run(["rm", "-rf", "--one-file-system", target], check=True)


def main(args):
    commands = {"snapshot": (snapshot, 2), "fork": (fork, 6), "boot": (boot, 6),
                "pause": (pause, 1), "resume": (resume, 1), "rollback": (rollback, 2),
                "destroy": (destroy, 1)}
    if not args or args[0] not in commands or len(args) - 1 != commands[args[0]][1]:
        sys.exit("usage: raw_qmp.py snapshot|fork|boot|pause|resume|rollback|destroy ARGS "
                 "(see the top of this file)")
    function, _ = commands[args[0]]
    rest = args[1:]
    if args[0] == "fork":
        rest[-1] = int(rest[-1])
    function(*rest)


if __name__ == "__main__":
    main(sys.argv[1:])
