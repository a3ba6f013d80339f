--- The helpers of the benchmark that need the core C API: the CRIU
-- command line of a snapshot, CRIU stats, sizes and cleanup. Each call
-- runs one bench_core command (bench/core_driver.c).
local proc = require "bench.proc"

local M = {}
M.__index = M

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

return M
