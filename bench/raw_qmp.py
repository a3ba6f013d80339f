#!/usr/bin/env python3
"""The raw QEMU baseline of the benchmark: the snapshot and fork of a
microVM done with QMP commands sent by a plain script, the way sandlot's
VM backend does them (docs/ARCHITECTURE.md, VM backend).

  raw_qmp.py snapshot VM_DIR RAM_FILE OUT_DIR
  raw_qmp.py fork ARGV_FILE SANDLOT_FORK_DIR SANDLOT_SNAPSHOT_DIR SNAPSHOT_DIR TARGET COUNT
  raw_qmp.py destroy TARGET

snapshot: connect to the QMP socket of the running VM in VM_DIR (a
sandlot sandbox), stop it, copy its disk overlay and its RAM file RAM_FILE
(sparse) into OUT_DIR, migrate the device state into OUT_DIR/state with
x-ignore-shared, and continue it.

fork: start COUNT QEMUs at once from the snapshot in SNAPSHOT_DIR. Each
one's command line is sandlot's own fork command line (ARGV_FILE, one
argument per line) with sandlot's fork folder and snapshot folder
replaced by the fork's folder under TARGET and SNAPSHOT_DIR. Each gets a
qcow2 overlay (qemu-img) on the snapshot's disk, loads the state with
migrate-incoming, continues, and runs /bin/true through the guest's agent
(the only way into the guest), which is its first exec result.

destroy: kill the QEMUs under TARGET and remove it.

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


def capture(qmp, vm_dir, ram_file, out_dir, times):
    """Copy the disk and the RAM and save the device state of the stopped
    guest, recording when each part ended in times."""
    copy_sparse(os.path.join(vm_dir, "disk.qcow2"), os.path.join(out_dir, "disk.qcow2"))
    times["disk"] = now_ms()
    copy_sparse(ram_file, os.path.join(out_dir, "ram"))
    times["ram"] = now_ms()
    state = os.open(os.path.join(out_dir, "state"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        qmp.migrate_fd(state, False)
    finally:
        os.close(state)
    times["state"] = now_ms()


def snapshot(vm_dir, ram_file, out_dir):
    start = now_ms()
    os.makedirs(out_dir)
    qmp = Qmp(os.path.join(vm_dir, "qmp.sock"))
    qmp.prepare_migration(True)
    times = {"stop": now_ms()}
    qmp.execute("stop")
    try:
        capture(qmp, vm_dir, ram_file, out_dir, times)
    finally:
        qmp.execute("cont")  # a failed capture leaves the guest running too
    end = now_ms()
    qmp.close()
    print("pause_ms=%.3f disk_ms=%.3f ram_ms=%.3f state_ms=%.3f total_ms=%.3f" % (
        end - times["stop"], times["disk"] - times["stop"], times["ram"] - times["disk"],
        times["state"] - times["ram"], end - start))


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


def agent_run_true(path):
    """Run /bin/true through the agent's stream port at path; return when
    it has exited 0."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(QMP_TIMEOUT_S)
    sock.connect(path)

    nonce = os.urandom(16)
    marker = struct.pack("<I", 0) + SYNC_MAGIC + nonce
    sock.sendall(marker)
    seen = b""
    while marker not in seen:  # the agent echoes the marker; skip stale bytes
        seen = seen[-len(marker):] + sock.recv(4096)
    rest = seen[seen.index(marker) + len(marker):]

    sock.sendall(agent_frame(MSG_EXEC, 1, [(F_ARGV, b"/bin/true"),
                                           (F_STREAM, struct.pack("<q", 1))]))
    buffer = rest
    while True:
        while len(buffer) < 4:
            buffer += read_exact(sock, 4 - len(buffer))
        (length,) = struct.unpack("<I", buffer[:4])
        while len(buffer) < 4 + length:
            buffer += read_exact(sock, 4 + length - len(buffer))
        frame, buffer = buffer[4:4 + length], buffer[4 + length:]
        msg_type, request_id = struct.unpack("<BI", frame[:5])
        if request_id != 1 or msg_type not in (MSG_EXIT, MSG_ERROR):
            continue
        sock.close()
        fields = parse_fields(frame[5:])
        if msg_type == MSG_ERROR or struct.unpack("<q", fields.get(F_EXIT_CODE, b"\xff" * 8))[0]:
            raise RuntimeError("/bin/true failed in the guest")
        return


def parse_fields(body):
    fields, pos = {}, 0
    while pos < len(body):
        key, length = struct.unpack("<BI", body[pos:pos + 5])
        fields[key] = body[pos + 5:pos + 5 + length]
        pos += 5 + length
    return fields


def fork_one(argv, snapshot_dir, fork_dir, result):
    start = now_ms()
    os.makedirs(fork_dir)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                    os.path.join(snapshot_dir, "disk.qcow2"),
                    os.path.join(fork_dir, "disk.qcow2")], check=True)
    subprocess.run(argv, check=True)  # -daemonize: returns once QEMU listens
    launched = now_ms()
    qmp = Qmp(os.path.join(fork_dir, "qmp.sock"))
    qmp.prepare_migration(True)
    state = os.open(os.path.join(snapshot_dir, "state"), os.O_RDONLY)
    try:
        qmp.migrate_fd(state, True)
    finally:
        os.close(state)
    qmp.execute("cont")
    running = now_ms()
    qmp.close()
    agent_run_true(os.path.join(fork_dir, "agent-0.sock"))
    result.update(launch_ms=launched - start, running_ms=running - start, done=now_ms())


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
    if any("done" not in r for r in results):
        sys.exit("raw_qmp.py: a fork failed")
    for i, r in enumerate(results):
        fork_dir = os.path.join(target, "fork-%d" % (i + 1))
        print("fork=%d launch_ms=%.3f running_ms=%.3f first_exec_ms=%.3f pss_kib=%d" % (
            i + 1, r["launch_ms"], r["running_ms"], r["done"] - start, qemu_pss_kib(fork_dir)))
    print("total_ms=%.3f" % (max(r["done"] for r in results) - start))


def destroy(target):
    if not os.path.isdir(target):
        return
    for name in os.listdir(target):
        pidfile = os.path.join(target, name, "qemu.pid")
        try:
            with open(pidfile) as f:
                pid = int(f.read())
            os.kill(pid, signal.SIGKILL)
            while os.path.exists("/proc/%d" % pid):
                time.sleep(0.01)
        except (OSError, ValueError):
            pass
    subprocess.run(["rm", "-rf", "--one-file-system", target], check=True)


def main(args):
    commands = {"snapshot": (snapshot, 3), "fork": (fork, 6), "destroy": (destroy, 1)}
    if not args or args[0] not in commands or len(args) - 1 != commands[args[0]][1]:
        sys.exit("usage: raw_qmp.py snapshot|fork|destroy ARGS (see the top of this file)")
    function, _ = commands[args[0]]
    rest = args[1:]
    if args[0] == "fork":
        rest[-1] = int(rest[-1])
    function(*rest)


if __name__ == "__main__":
    main(sys.argv[1:])
