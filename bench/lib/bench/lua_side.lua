--- The sandlot side of the benchmark through the Lua API users call
-- (require "sandlot"): sandboxes, commands, snapshots, forks, pause,
-- resume and rollback. The calls run in
-- this task and are timed around the call, so the task's suspend and
-- resume are part of every figure.
local sandlot = require "sandlot"
local proc = require "bench.proc"

local Sandbox = sandlot.Sandbox

local M = {}
M.__index = M

M.api = "Lua API"

--- A side on the store at `home`; this process's Lua API uses that store
-- from now on.
function M.new(home)
  local ok, err = sandlot.set_home(home)
  if not ok then
    error(("bench: cannot use the store %s: %s"):format(home, err), 2)
  end
  return setmetatable({ home = home }, M)
end

--- Run `true` in `sb`; true once it exited 0.
local function run_true(sb)
  local result, err = sb:exec "true"
  if result == nil then
    return nil, err
  end
  if result.exit_code ~= 0 then
    return nil, ("`true` exited with %d in %s"):format(result.exit_code, sb.id)
  end
  return true
end

--- Create a sandbox with `options` (Sandbox.create) and run `true` in it.
-- Returns the sandbox and the milliseconds from the create call until the
-- result of `true`.
function M:create(options)
  local start = proc.now_ms()
  local sb, err = Sandbox.create(options or {})
  if sb == nil then
    return nil, err
  end
  local ok
  ok, err = run_true(sb)
  local create_ms = proc.now_ms() - start
  if not ok then
    sb:kill()
    return nil, err
  end
  return sb, create_ms
end

--- The lowerdir option of the overlay mounted at `root`.
local function lowerdirs_of(root)
  for line in (proc.read_file "/proc/self/mountinfo" or ""):gmatch "[^\n]+" do
    local mount_point = line:match "^%S+ %S+ %S+ %S+ (%S+)"
    if mount_point == root then
      return line:match "lowerdir=([^,]+)"
    end
  end
end

--- What the raw CRIU side needs of a process sandbox: id, init_pid, root,
-- upper, lowerdirs, cgroups (by controller), memory_bytes, pids_max.
function M:record(sb)
  local info, err = sb:info()
  if info == nil then
    return nil, err
  end
  local lowerdirs = lowerdirs_of(info.root)
  if lowerdirs == nil then
    return nil, "no overlay mounted at " .. info.root
  end
  return {
    id = info.id, init_pid = info.init_pid, root = info.root, cgroups = info.cgroups,
    upper = ("%s/sandboxes/%s/upper"):format(self.home, info.id), lowerdirs = lowerdirs,
    memory_bytes = info.memory, pids_max = info.pids,
  }
end

--- Round trips of sb:exec { "true" }: a list of milliseconds.
function M:exec_round_trips(sb, count)
  local samples = {}
  for i = 1, count do
    local start = proc.now_ms()
    local result, err = sb:exec { "true" }
    if result == nil then
      return nil, err
    end
    samples[i] = proc.now_ms() - start
  end
  return samples
end

--- Take a full snapshot of `sb`: the snapshot and the milliseconds of
-- sb:snapshot().
function M:snapshot(sb)
  local start = proc.now_ms()
  local snap, err = sb:snapshot()
  if snap == nil then
    return nil, err
  end
  return snap, proc.now_ms() - start
end

--- Start `count` forks of `snap` at once (Sandbox.create, or
-- Sandbox.create_many for more than one) with the create `options`
-- (limits) and run `true` in each, in parallel tasks. Returns the forks
-- and the milliseconds until every `true` has exited. On failure the
-- forks made are killed.
function M:fork(snap, count, options)
  local spec = { snapshot = snap }
  for key, value in pairs(options or {}) do
    spec[key] = value
  end
  local start = proc.now_ms()
  local forks, err
  if count == 1 then
    local fork
    fork, err = Sandbox.create(spec)
    forks = fork and { fork }
  else
    spec.count = count
    forks, err = Sandbox.create_many(spec)
  end
  if forks == nil then
    return nil, err
  end
  local tasks = {}
  for i, fork in ipairs(forks) do
    tasks[i] = sandlot.spawn(run_true, fork)
  end
  local ok
  ok, err = sandlot.wait_all(tasks)
  local all_ms = proc.now_ms() - start
  if not ok then
    for _, fork in ipairs(forks) do
      self:kill(fork)
    end
    return nil, err
  end
  return forks, all_ms
end

--- The v1 memory cgroup directory of `sb`.
function M:memory_cgroup(sb)
  local info, err = sb:info()
  if info == nil then
    return nil, err
  end
  return info.cgroups.memory
end

--- Pause `sb` (sb:pause()): milliseconds until its memory is on disk and
-- its processes are gone.
function M:pause(sb)
  local start = proc.now_ms()
  local ok, err = sb:pause()
  if not ok then
    return nil, err
  end
  return proc.now_ms() - start
end

--- Resume `sb` until `true` has run in it: milliseconds.
function M:resume(sb)
  local start = proc.now_ms()
  local ok, err = sb:resume()
  if ok then
    ok, err = run_true(sb)
  end
  if not ok then
    return nil, err
  end
  return proc.now_ms() - start
end

--- Roll `sb` back to `snap` until `true` has run in it: milliseconds.
function M:rollback(sb, snap)
  local start = proc.now_ms()
  local ok, err = sb:rollback(snap)
  if ok then
    ok, err = run_true(sb)
  end
  if not ok then
    return nil, err
  end
  return proc.now_ms() - start
end

--- Kill the sandbox and delete its record; returns the milliseconds of
-- sb:kill() (until its mounts, cgroups and processes are released).
function M:kill(sb)
  local start = proc.now_ms()
  local ok, err = sb:kill()
  local kill_ms = proc.now_ms() - start
  if not ok then
    return nil, err
  end
  sb:delete()
  return kill_ms
end

return M
