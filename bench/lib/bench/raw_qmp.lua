--- The raw QEMU baseline: bench/raw_qmp.py, the VM backend's snapshot and
-- fork done with QMP commands by a plain script.
local proc = require "bench.proc"

local M = {}
M.__index = M

function M.new(script)
  return setmetatable({ script = script }, M)
end

--- Snapshot the running VM in `vm_dir` (RAM in `ram_file`) into `out_dir`:
-- pause_ms, disk_ms, ram_ms, state_ms, total_ms.
function M:snapshot(vm_dir, ram_file, out_dir)
  local out, err = proc.output { self.script, "snapshot", vm_dir, ram_file, out_dir }
  if out == nil then
    return nil, err
  end
  return proc.parse_key_values(out)[1]
end

--- Start `count` forks of the snapshot in `snapshot_dir` at once under
-- `target`, with sandlot's fork command line in `argv_file`. Returns
-- total_ms and forks ({ fork, launch_ms, running_ms, first_exec_ms,
-- pss_kib }).
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
      result.total_ms = fields.total_ms
    end
  end
  return result
end

--- Kill the QEMUs under `target` and remove it.
function M:destroy(target)
  return proc.output { self.script, "destroy", target }
end

return M
