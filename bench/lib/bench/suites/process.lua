--- Process sandbox rows: snapshots of a running workload, forks from a
-- snapshot, pause and resume, rollback; sandlot against raw CRIU.
local sandlot = require "sandlot"
local proc = require "bench.proc"
local report = require "bench.report"
local schedule = require "bench.schedule"
local stats = require "bench.stats"
local workload = require "bench.workload"

local M = {}

local MIB = 1024 * 1024
local SNAPSHOT_GROUP = "Process sandboxes: snapshot of a running sandbox"
local FORK_GROUP = "Process sandboxes: forks of a snapshot"
local LIFECYCLE_GROUP = "Process sandboxes: pause, resume and rollback"
local NO_FORK_API = "needs forks from a snapshot in the public API (branch snap)"
local NO_LIFECYCLE_API = "needs pause, resume and rollback in the public API (branch snap)"

local function label(mib)
  return mib >= 1024 and ("%d GB"):format(mib // 1024) or ("%d MB"):format(mib)
end

--- The memory limit of a benchmark sandbox: room for the workload twice.
local function memory_limit(mib)
  return ("%dM"):format(math.max(512, 2 * mib))
end

-- ---- CRIU flags -----------------------------------------------------------

--- The tokens of a CRIU command line with paths, numbers and namespace
-- ids replaced, so two runs with the same flags compare equal.
function M.normalize_argv(argv)
  local tokens = {}
  for token in argv:gmatch "%S+" do
    token = token:gsub("^'(.*)'$", "%1")
    if token:sub(1, 1) == "/" then
      token = "PATH"
    elseif token:match "^%d+$" then
      token = "N"
    else
      token = token:gsub("%[%d+%]", "[N]"):gsub(":/.*$", ":PATH")
    end
    tokens[#tokens + 1] = token
  end
  return table.concat(tokens, " ")
end

-- ---- snapshots ------------------------------------------------------------

local function sandlot_snapshot(ctx, sb, argv_seen)
  workload.clear_gaps(sb.init_pid)
  local from = proc.now_ms()
  local snap, err = ctx.core:snapshot(sb.id)
  local to = proc.now_ms()
  if snap == nil then
    return nil, err
  end
  argv_seen.sandlot = argv_seen.sandlot or snap.criu_argv
  -- The workload logs its gap on its first tick after the thaw.
  sandlot.sleep(20)
  local pause, pause_err = workload.pause(sb.init_pid, from, to)
  local criu, stats_err = ctx.core:criu_stats(snap.work_dir .. "/stats-dump")
  local removed, remove_err = ctx.core:snapshot_remove(snap.id)
  if pause == nil or criu == nil or removed == nil then
    return nil, pause_err or stats_err or remove_err
  end
  return {
    pause_ms = pause, frozen_ms = criu.frozen_ms, freezing_ms = criu.freezing_ms,
    total_ms = snap.total_ms, size_mib = snap.size_bytes / MIB,
  }
end

local function raw_snapshot(ctx, sb, argv_seen, dir)
  workload.clear_gaps(sb.init_pid)
  local from = proc.now_ms()
  local dump, err = ctx.raw:dump(sb.init_pid, sb.cgroups.freezer, sb.upper, dir)
  local to = proc.now_ms()
  if dump == nil then
    proc.output { "/bin/rm", "-rf", "--one-file-system", dir }
    return nil, err
  end
  argv_seen.raw = argv_seen.raw or dump.criu_argv
  sandlot.sleep(20)
  local pause, pause_err = workload.pause(sb.init_pid, from, to)
  local criu, stats_err = ctx.core:criu_stats(dump.work .. "/stats-dump")
  local size, size_err = ctx.core:size(dump.images, dump.layer)
  proc.output { "/bin/rm", "-rf", "--one-file-system", dir }
  if pause == nil or criu == nil or size == nil then
    return nil, pause_err or stats_err or size_err
  end
  return {
    pause_ms = pause, frozen_ms = criu.frozen_ms, freezing_ms = criu.freezing_ms,
    total_ms = dump.total_ms, size_mib = size / MIB,
  }
end

local snapshot_metrics = {
  { "pause_ms", "pause seen by the workload", "ms" },
  { "frozen_ms", "CRIU frozen time (stats-dump)", "ms" },
  { "freezing_ms", "CRIU freezing time (stats-dump)", "ms" },
  { "total_ms", "snapshot total time", "ms" },
  { "size_mib", "image size (images and upper layer)", "MiB" },
}

--- Rows of one comparison: one per metric, with both sides and the
-- ratio per pair.
local function comparison_rows(ctx, group, prefix, metrics, samples, fields)
  for _, metric in ipairs(metrics) do
    local key, name, unit = metric[1], metric[2], metric[3]
    local a, b = samples.a[key], samples.b[key]
    ctx.add(report.row {
      group = group, name = prefix .. name, unit = unit,
      status = a and "measured" or "pending",
      sandlot = a and stats.summary(a), api = a and ctx.core.api or nil,
      baseline_name = "raw CRIU", baseline = b and stats.summary(b),
      ratio = a and b and stats.pair_ratios(a, b) or nil,
      reason = not a and fields.reason or nil,
    })
  end
end

local function snapshot_rows(ctx, sb, size)
  local argv_seen = {}
  local samples, err = schedule.run {
    runs = ctx.runs, warmup = ctx.warmup,
    a = function()
      return sandlot_snapshot(ctx, sb, argv_seen)
    end,
    b = function(run)
      local dir = ("%s/raw-dump-%d-%s"):format(ctx.work, size.mib, run or "warmup")
      return raw_snapshot(ctx, sb, argv_seen, dir)
    end,
  }
  if samples == nil then
    return nil, err
  end
  comparison_rows(ctx, SNAPSHOT_GROUP, label(size.mib) .. ": ", snapshot_metrics, samples, {})
  ctx.flags[#ctx.flags + 1] = {
    operation = "dump", size = label(size.mib),
    sandlot = argv_seen.sandlot, raw = argv_seen.raw,
    same = argv_seen.sandlot ~= nil
      and M.normalize_argv(argv_seen.sandlot) == M.normalize_argv(argv_seen.raw),
  }
  return true
end

-- ---- forks ----------------------------------------------------------------

--- Average memory per fork over the forks of one run.
local function fork_memory(forks)
  local pss, usage = 0, 0
  for _, fork in ipairs(forks) do
    local memory, err = workload.cgroup_memory(fork.memory_cgroup)
    if memory == nil then
      return nil, err
    end
    pss, usage = pss + memory.pss_bytes, usage + memory.usage_bytes
  end
  return pss / #forks / MIB, usage / #forks / MIB
end

local function raw_forks(ctx, dump, sb, count, target)
  local lowerdirs = dump.layer .. ":" .. sb.lowerdirs
  local result, err = ctx.raw:fork(dump.images, lowerdirs, sb.memory_bytes, sb.pids_max,
    target, count)
  local pss, usage_or_err
  if result ~= nil then
    pss, usage_or_err = fork_memory(result.forks)
  end
  local destroyed, destroy_err = ctx.raw:destroy(target)
  if result == nil then
    return nil, err
  elseif pss == nil then
    return nil, usage_or_err
  elseif destroyed == nil then
    return nil, destroy_err
  end
  local usage = usage_or_err
  return {
    first_exec_ms = result.total_ms, restore_ms = result.forks[1].restore_ms,
    pss_mib = pss, usage_mib = usage,
  }
end

local function fork_rows(ctx, sb, size, dump)
  local err
  for _, count in ipairs(size.forks) do
    local target = ("%s/raw-forks-%d-%d"):format(ctx.work, size.mib, count)
    local samples
    samples, err = schedule.run {
      runs = ctx.runs, warmup = ctx.warmup,
      b = function()
        return raw_forks(ctx, dump, sb, count, target)
      end,
    }
    if samples == nil then
      return nil, err
    end
    local forks = count == 1 and "one fork" or ("%d forks started together"):format(count)
    local metrics = {
      { "first_exec_ms", forks .. ", until every first exec result", "ms" },
    }
    if count == 1 then
      metrics[2] = { "restore_ms", "one fork, criu restore alone", "ms" }
    end
    if count == size.memory_forks then
      local of = count == 1 and "1 fork" or ("%d forks"):format(count)
      metrics[#metrics + 1] = { "pss_mib", ("memory per fork, PSS (%s)"):format(of), "MiB" }
      metrics[#metrics + 1] = {
        "usage_mib", ("memory per fork, cgroup usage (%s)"):format(of), "MiB",
      }
    end
    comparison_rows(ctx, FORK_GROUP, label(size.mib) .. ": ", metrics, samples,
      { reason = NO_FORK_API })
  end
  return true
end

--- One pause, resume and rollback of a raw fork.
local function raw_lifecycle(ctx, dir, dump, lowerdirs)
  local paused, err = ctx.raw:pause(dir)
  if paused == nil then
    return nil, err
  end
  local resumed, rolled
  resumed, err = ctx.raw:resume(dir, lowerdirs)
  if resumed == nil then
    return nil, err
  end
  rolled, err = ctx.raw:rollback(dir, dump.images, lowerdirs)
  if rolled == nil then
    return nil, err
  end
  return { pause_ms = paused.pause_ms, resume_ms = resumed.resume_ms,
    rollback_ms = rolled.rollback_ms }
end

local lifecycle_metrics = {
  { "pause_ms", "pause (until the sandbox's memory is on disk)", "ms" },
  { "resume_ms", "resume until the first exec result", "ms" },
  { "rollback_ms", "rollback to a snapshot until the first exec result", "ms" },
}

--- Pause, resume and roll back a fork of the snapshot, again and again.
local function lifecycle_rows(ctx, sb, size, dump)
  local target = ("%s/raw-forks-%d-life"):format(ctx.work, size.mib)
  local lowerdirs = dump.layer .. ":" .. sb.lowerdirs
  local forked, err = ctx.raw:fork(dump.images, lowerdirs, sb.memory_bytes, sb.pids_max, target,
    1)
  local samples
  if forked ~= nil then
    samples, err = schedule.run {
      runs = ctx.runs, warmup = ctx.warmup,
      b = function()
        return raw_lifecycle(ctx, target .. "/fork-1", dump, lowerdirs)
      end,
    }
  end
  ctx.raw:destroy(target)
  if samples == nil then
    return nil, err
  end
  comparison_rows(ctx, LIFECYCLE_GROUP, label(size.mib) .. ": ", lifecycle_metrics, samples,
    { reason = NO_LIFECYCLE_API })
  return true
end

-- ---- one size -------------------------------------------------------------

local function failed_row(ctx, group, size, err)
  ctx.add(report.row {
    group = group, name = label(size.mib) .. ": all rows", unit = "ms", status = "failed",
    reason = tostring(err),
  })
end

--- Create the sandbox of one size with its workload through the Lua API.
-- Returns the sandbox object, its record and the workload's resident
-- bytes.
local function prepare(ctx, size)
  local sb, err = ctx.lua:create { memory = memory_limit(size.mib) }
  if sb == nil then
    return nil, err
  end
  local record, started, rss
  record, err = ctx.lua:record(sb)
  if record then
    started, err = sb:exec(workload.command(ctx.workload_script, size.mib))
  end
  if started then
    rss, err = workload.wait_ready(record.init_pid)
  end
  -- Neither side's dump may find a host connection in the tree, and the
  -- raw side does not ask the agent to close its connections.
  if rss then
    started, err = ctx.core:quiesce(record.id)
  end
  if not (rss and started) then
    ctx.lua:kill(sb)
    return nil, err
  end
  return sb, record, rss
end

local function run_size(ctx, size)
  ctx.log("process sandbox with %s: create and start the workload", label(size.mib))
  local sb, record, rss = prepare(ctx, size)
  if sb == nil then
    return failed_row(ctx, SNAPSHOT_GROUP, size, record)
  end
  ctx.log("%s: workload holds %.0f MiB; snapshots, sandlot and raw CRIU alternating",
    label(size.mib), rss / MIB)
  local first_size = size == ctx.sizes[1]
  ctx.add(report.row {
    group = SNAPSHOT_GROUP, name = label(size.mib) .. ": resident memory of the workload",
    unit = "MiB", sandlot = stats.summary { rss / MIB }, api = "/proc/self/statm",
    note = first_size and "the workload's resident set while it is snapshotted and forked: "
      .. "its data and the interpreter's own pages" or nil,
  })
  local ok, snapshot_err = snapshot_rows(ctx, record, size)
  if not ok then
    failed_row(ctx, SNAPSHOT_GROUP, size, snapshot_err)
  end
  ctx.log("%s: forks, pause, resume and rollback", label(size.mib))
  local dir = ("%s/raw-fork-source-%d"):format(ctx.work, size.mib)
  local dump, err = ctx.raw:dump(record.init_pid, record.cgroups.freezer, record.upper, dir)
  local done
  if dump ~= nil then
    done, err = fork_rows(ctx, record, size, dump)
  end
  if not done then
    failed_row(ctx, FORK_GROUP, size, err)
  end
  if dump ~= nil then
    done, err = lifecycle_rows(ctx, record, size, dump)
    if not done then
      failed_row(ctx, LIFECYCLE_GROUP, size, err)
    end
  end
  proc.output { "/bin/rm", "-rf", "--one-file-system", dir }
  ctx.lua:kill(sb)
end

--- Run the process sandbox rows for every size in ctx.sizes.
function M.run(ctx)
  for _, size in ipairs(ctx.sizes) do
    run_size(ctx, size)
  end
end

return M
