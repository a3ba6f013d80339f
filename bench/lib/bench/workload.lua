--- The workload inside a benchmark sandbox (bench/workload.py), and the
-- host-side readings of it: the pauses it logged and the memory its
-- processes use.
local sandlot = require "sandlot"
local proc = require "bench.proc"

local M = {}

local READY = "/tmp/workload.ready"
local GAPS = "/tmp/gaps"

--- The path of a file inside the sandbox whose PID 1 is `init_pid`, seen
-- from the host.
local function inside(init_pid, path)
  return ("/proc/%d/root%s"):format(init_pid, path)
end

--- The command that starts the workload with `mib` MiB of data in the
-- background and returns at once, so no process of the workload stays
-- attached to a client of the agent.
function M.command(script, mib)
  return { "/bin/sh", "-c", 'python3 -c "$0" "$1" </dev/null >/dev/null 2>&1 &', script,
    tostring(mib) }
end

--- Wait until the workload in the sandbox whose PID 1 is `init_pid`
-- reports ready. Returns its resident bytes.
function M.wait_ready(init_pid, timeout_ms)
  timeout_ms = timeout_ms or 120000
  local deadline = proc.now_ms() + timeout_ms
  while proc.now_ms() < deadline do
    local text = proc.read_file(inside(init_pid, READY))
    if text ~= nil and tonumber(text) then
      return tonumber(text)
    end
    sandlot.sleep(50)
  end
  return nil, ("the workload of pid %d did not report ready within %d ms"):format(init_pid,
    timeout_ms)
end

--- Empty the workload's gap log.
function M.clear_gaps(init_pid)
  return proc.write_file(inside(init_pid, GAPS), "")
end

--- The maximum gap in a gap log ("START END" lines in seconds) that
-- overlaps the window from `from_ms` to `to_ms` (milliseconds, same
-- clock); nil when none does.
function M.max_gap(text, from_ms, to_ms)
  local max
  for start, stop in text:gmatch "([%d.]+) ([%d.]+)" do
    start, stop = tonumber(start) * 1000, tonumber(stop) * 1000
    if stop >= from_ms and start <= to_ms then
      local gap = stop - start
      if max == nil or gap > max then
        max = gap
      end
    end
  end
  return max
end

--- The maximum pause the workload saw between `from_ms` and `to_ms`.
function M.pause(init_pid, from_ms, to_ms)
  local text, err = proc.read_file(inside(init_pid, GAPS))
  if text == nil then
    return nil, err
  end
  local gap = M.max_gap(text, from_ms, to_ms)
  if gap == nil then
    return nil, ("the workload of pid %d logged no pause during the operation"):format(init_pid)
  end
  return gap
end

--- The memory the processes of a v1 memory cgroup use, in bytes. pss_bytes
-- is the sum of their proportional set sizes (Pss in smaps_rollup, which
-- divides shared pages among the processes that map them). usage_bytes is
-- the cgroup's memory.usage_in_bytes, which also counts page cache
-- charged to it.
function M.cgroup_memory(memory_cgroup)
  local procs, err = proc.read_file(memory_cgroup .. "/cgroup.procs")
  if procs == nil then
    return nil, err
  end
  local pss = 0
  for pid in procs:gmatch "%d+" do
    local rollup = proc.read_file(("/proc/%s/smaps_rollup"):format(pid)) or ""
    pss = pss + (tonumber(rollup:match "\nPss:%s*(%d+) kB") or 0) * 1024
  end
  local usage = tonumber(proc.read_file(memory_cgroup .. "/memory.usage_in_bytes") or "")
  return { pss_bytes = pss, usage_bytes = usage or 0 }
end

return M
