--- The sandlot side of the benchmark through the core C API, for the
-- operations whose Lua API is not on main yet, and the helpers that need
-- the core (CRIU stats, sizes, cleanup). Each call runs one
-- bench_core command (bench/core_driver.c), which times the core call
-- inside its own process, so process start-up is not counted.
local proc = require "bench.proc"

local M = {}
M.__index = M

M.api = "core C API"

--- A side on the store at `home`, with the bench_core program at `program`.
function M.new(program, home)
  return setmetatable({ program = program, home = home }, M)
end

function M:call(command, ...)
  return proc.json { self.program, command, self.home, ... }
end

--- Ask the sandbox's agent to close every client connection.
function M:quiesce(id)
  return self:call("quiesce", id)
end

--- A full snapshot: id, total_ms, dump_ms, frozen_ms, size_bytes,
-- image_dir, work_dir (CRIU's log and stats) and criu_argv.
function M:snapshot(id)
  return self:call("snapshot", id)
end

function M:snapshot_remove(ref)
  return self:call("snapshot-remove", ref)
end

--- Kill and remove a sandbox; returns { kill_ms }.
function M:kill(id)
  return self:call("kill", id)
end

--- Decode a CRIU stats image (stats-dump or stats-restore).
function M:criu_stats(path)
  return proc.json { self.program, "criu-stats", path }
end

--- Allocated bytes under the given paths, counted as the snapshot engine
-- counts a snapshot's size.
function M:size(...)
  local out, err = proc.json { self.program, "size", ... }
  return out and out.bytes, err
end

-- ---- microVMs (bench/core_vm.c) ----

--- Create a VM sandbox and run `true` in it: id, create_ms, qemu_pid,
-- memory_bytes.
function M:vm_create(memory)
  return self:call("vm-create", memory)
end

function M:vm_spawn(id, argv)
  return self:call("vm-spawn", id, table.unpack(argv))
end

--- The contents of a file in the guest.
function M:vm_read(id, path)
  local out, err = self:call("vm-read", id, path)
  return out and out.data, err
end

--- Snapshot `snapshot` of a running VM: total_ms, pause_ms (QMP stop to
-- the reply of cont), disk_ms, ram_ms, state_ms, size_bytes.
function M:vm_snapshot(id, snapshot)
  return self:call("vm-snapshot", id, snapshot)
end

function M:vm_snapshot_remove(snapshot)
  return self:call("vm-snapshot-remove", snapshot)
end

--- Start `count` forks of a snapshot at once, each until its first exec
-- result, then delete them: total_ms and running_ms (until the last
-- fork's first exec result and its reply to cont), forks ({ id,
-- running_ms, first_exec_ms, pss_kib }), and the first fork's fork_dir
-- and qemu_argv.
function M:vm_fork(snapshot, count)
  return self:call("vm-fork", snapshot, tostring(count))
end

function M:vm_pause(id)
  return self:call("vm-pause", id)
end

--- Resume a paused VM until its first exec result: resume_ms.
function M:vm_resume(id)
  return self:call("vm-resume", id)
end

--- Roll a VM back to a snapshot until its first exec result: rollback_ms.
function M:vm_rollback(id, snapshot)
  return self:call("vm-rollback", id, snapshot)
end

return M
