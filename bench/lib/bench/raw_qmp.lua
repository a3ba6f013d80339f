--- The raw QEMU baseline: bench/raw_qmp.py, the VM backend's snapshot and
-- fork done with QMP commands by a plain script.
local proc = require "bench.proc"

local M = {}
M.__index = M

function M.new(script)
  return setmetatable({ script = script }, M)
end

--- Snapshot the script's running VM in `vm_dir` into `out_dir`: pause_ms,
-- disk_ms, ram_ms, state_ms, total_ms, and disk (the frozen layer).
function M:snapshot(vm_dir, out_dir)
  local out, err = proc.output { self.script, "snapshot", vm_dir, out_dir }
  if out == nil then
    return nil, err
  end
  return proc.parse_key_values(out)[1]
end


--- Start `count` forks of the snapshot in `snapshot_dir` at once under
-- `target`, with sandlot's fork command line in `argv_file`. Returns
-- total_ms and running_ms (until the last fork's first exec result and
-- its reply to cont) and forks ({ fork, start_ms, launch_ms, running_ms,
-- first_exec_ms, pss_kib }), all from the start of the first fork.
function M:fork(argv_file, sandlot_fork_dir, sandlot_snapshot_dir, snapshot_dir, target, count)
  local out, err = proc.output { self.script, "fork", argv_file, sandlot_fork_dir,
    sandlot_snapshot_dir, snapshot_dir, target, tostring(count) }
  if out == nil then
    return nil, err
  end
  local result = { forks = {} }
  for _, fields in ipairs(proc.parse_key_values(out)) do
    if fields.fork ~= nil then
      table.insert(result.forks, fields)
    else
      result.total_ms, result.running_ms = fields.total_ms, fields.running_ms
    end
  end
  return result
end

local function first_values(out, err)
  if out == nil then
    return nil, err
  end
  return proc.parse_key_values(out)[1]
end

--- Boot a VM of the script's own in `vm_dir` with the command line in
-- `argv_file` that sandlot booted `sandlot_dir` with, and start the
-- workload in it: boot_ms and ram (its live RAM file).
function M:boot(argv_file, sandlot_dir, sandlot_ram, vm_dir, workload_file, mib)
  return first_values(proc.output { self.script, "boot", argv_file, sandlot_dir, sandlot_ram,
    vm_dir, workload_file, tostring(mib) })
end

--- Pause the VM in `vm_dir`: pause_ms.
function M:pause(vm_dir)
  return first_values(proc.output { self.script, "pause", vm_dir })
end

--- Resume it until its first exec result: resume_ms.
function M:resume(vm_dir)
  return first_values(proc.output { self.script, "resume", vm_dir })
end

--- Roll it back to the snapshot in `snapshot_dir` until its first exec
-- result: rollback_ms.
function M:rollback(vm_dir, snapshot_dir)
  return first_values(proc.output { self.script, "rollback", vm_dir, snapshot_dir })
end

--- Kill the QEMUs under `target` and remove it.
function M:destroy(target)
  return proc.output { self.script, "destroy", target }
end

return M
