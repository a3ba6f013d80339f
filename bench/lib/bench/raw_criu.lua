--- The raw CRIU baseline: bench/raw_criu.sh, the same criu binary and
-- flags as sandlot, driven by plain shell.
local proc = require "bench.proc"

local M = {}
M.__index = M

--- A baseline that runs `script` with the CRIU binary `criu`.
function M.new(script, criu)
  return setmetatable({ script = script, criu = criu }, M)
end

local function merge(lines)
  local merged = {}
  for _, fields in ipairs(lines) do
    for key, value in pairs(fields) do
      merged[key] = value
    end
  end
  return merged
end

--- Dump the tree of `pid` (leaving it running) into dir/images, its upper
-- into dir/layer, logs and stats into dir/work. Returns dump_ms,
-- total_ms (dump and sync), criu_argv and the three paths.
function M:dump(pid, freezer, upper, dir)
  local images, layer, work = dir .. "/images", dir .. "/layer", dir .. "/work"
  local out, err = proc.output { self.script, "dump", self.criu, tostring(pid), freezer, upper,
    images, layer, work }
  if out == nil then
    return nil, err
  end
  local result = merge(proc.parse_key_values(out))
  result.images, result.layer, result.work = images, layer, work
  return result
end

--- Start `count` forks of a dump at once under `target`. Returns
-- total_ms (until every fork's first command has exited), criu_argv, and
-- forks: a list of { fork, pid, restore_ms, first_exec_ms, memory_cgroup }.
function M:fork(images, lowerdirs, memory_bytes, pids_max, target, count)
  local out, err = proc.output { self.script, "fork", self.criu, images, lowerdirs,
    tostring(memory_bytes), tostring(pids_max), target, tostring(count) }
  if out == nil then
    return nil, err
  end
  local result = { forks = {} }
  for _, fields in ipairs(proc.parse_key_values(out)) do
    if fields.fork ~= nil then
      table.insert(result.forks, fields)
    else
      for key, value in pairs(fields) do
        result[key] = value
      end
    end
  end
  return result
end

local function timed(script, ...)
  local out, err = proc.output { script, ... }
  if out == nil then
    return nil, err
  end
  return merge(proc.parse_key_values(out))
end

--- Dump fork `dir` (TARGET/fork-N of :fork) and end its tree: pause_ms.
function M:pause(dir)
  return timed(self.script, "pause", self.criu, dir)
end

--- Restore a paused fork `dir` until its first command has exited:
-- resume_ms.
function M:resume(dir, lowerdirs)
  return timed(self.script, "resume", self.criu, dir, lowerdirs)
end

--- Put fork `dir` back to the dump in `images` over a fresh upper on
-- `lowerdirs`, until its first command has exited: rollback_ms.
function M:rollback(dir, images, lowerdirs)
  return timed(self.script, "rollback", self.criu, dir, images, lowerdirs)
end

--- Kill the forks under `target` and remove their mounts, cgroups and
-- folders.
function M:destroy(target)
  return proc.output { self.script, "destroy", target }
end

return M
