--- Process sandbox rows: snapshots of a running workload, forks from a
-- snapshot, pause and resume, rollback; sandlot (Lua API) against raw
-- CRIU (bench/raw_criu.sh).
local sandlot = require "sandlot"
local uv = require "luv"
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

local function label(mib)
  return mib >= 1024 and ("%d GB"):format(mib // 1024) or ("%d MB"):format(mib)
end

--- The memory limit of a benchmark sandbox: room for the workload twice.
local function memory_limit(mib)
  return ("%dM"):format(math.max(512, 2 * mib))
end

local function remove_tree(path)
  proc.output { "/bin/rm", "-rf", "--one-file-system", path }
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

--- Record sandlot's and the raw script's dump command lines and whether
-- they match. sandlot's comes from one extra, untimed snapshot through
-- bench_core, which logs it.
local function check_flags(ctx, src, raw_argv, size)
  local snap, err = ctx.core:snapshot(src.record.id)
  if snap == nil then
    return nil, err
  end
  ctx.core:snapshot_remove(snap.id)
  ctx.flags[#ctx.flags + 1] = {
    operation = "dump", size = label(size.mib), sandlot = snap.criu_argv, raw = raw_argv,
    same = M.normalize_argv(snap.criu_argv) == M.normalize_argv(raw_argv),
  }
  return true
end

-- ---- rows -----------------------------------------------------------------

--- Rows of one comparison: one per metric, with both sides and the
-- ratio per pair.
local function comparison_rows(ctx, group, prefix, metrics, samples)
  for _, metric in ipairs(metrics) do
    local key, name, unit = metric[1], metric[2], metric[3]
    local a, b = samples.a[key], samples.b[key]
    ctx.add(report.row {
      group = group, name = prefix .. name, unit = unit,
      sandlot = stats.summary(a), api = ctx.lua.api,
      baseline_name = "raw CRIU", baseline = b and stats.summary(b),
      ratio = b and stats.pair_ratios(a, b) or nil,
    })
  end
end

local function failed_row(ctx, group, size, err)
  ctx.add(report.row {
    group = group, name = label(size.mib) .. ": all rows", unit = "ms", status = "failed",
    reason = tostring(err),
  })
end

-- ---- snapshots ------------------------------------------------------------

local function sandlot_snapshot(ctx, src)
  local record = src.record
  workload.clear_gaps(record.init_pid)
  local from = proc.now_ms()
  local snap, total_ms = ctx.lua:snapshot(src.sb)
  local to = proc.now_ms()
  if snap == nil then
    return nil, total_ms
  end
  -- The workload logs its gap on its first tick after the thaw.
  sandlot.sleep(20)
  local pause, pause_err = workload.pause(record.init_pid, from, to)
  local criu, stats_err = ctx.core:criu_stats(("%s/sandboxes/%s/log/%s/stats-dump"):format(
    ctx.home, record.id, snap.id))
  local removed, remove_err = snap:delete()
  if pause == nil or criu == nil or removed == nil then
    return nil, pause_err or stats_err or remove_err
  end
  return {
    pause_ms = pause, frozen_ms = criu.frozen_ms, freezing_ms = criu.freezing_ms,
    total_ms = total_ms, size_mib = snap.size / MIB,
  }
end

local function raw_snapshot(ctx, src, dir)
  local record = src.record
  workload.clear_gaps(record.init_pid)
  local from = proc.now_ms()
  local dump, err = ctx.raw:dump(record.init_pid, record.cgroups.freezer, record.upper, dir)
  local to = proc.now_ms()
  if dump == nil then
    remove_tree(dir)
    return nil, err
  end
  src.raw_argv = src.raw_argv or dump.criu_argv
  sandlot.sleep(20)
  local pause, pause_err = workload.pause(record.init_pid, from, to)
  local criu, stats_err = ctx.core:criu_stats(dump.work .. "/stats-dump")
  local size, size_err = ctx.core:size(dump.images, dump.layer)
  remove_tree(dir)
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

local function snapshot_rows(ctx, src, size)
  local samples, err = schedule.run {
    runs = ctx.runs, warmup = ctx.warmup,
    a = function()
      return sandlot_snapshot(ctx, src)
    end,
    b = function(run)
      local dir = ("%s/raw-dump-%d-%s"):format(ctx.work, size.mib, run or "warmup")
      return raw_snapshot(ctx, src, dir)
    end,
  }
  if samples == nil then
    return nil, err
  end
  comparison_rows(ctx, SNAPSHOT_GROUP, label(size.mib) .. ": ", snapshot_metrics, samples)
  return check_flags(ctx, src, src.raw_argv, size)
end

-- ---- forks ----------------------------------------------------------------

--- Average memory per fork over the memory cgroups of one run's forks.
local function fork_memory(memory_cgroups)
  local pss, usage = 0, 0
  for _, cgroup in ipairs(memory_cgroups) do
    local memory, err = workload.cgroup_memory(cgroup)
    if memory == nil then
      return nil, err
    end
    pss, usage = pss + memory.pss_bytes, usage + memory.usage_bytes
  end
  return { pss_mib = pss / #memory_cgroups / MIB, usage_mib = usage / #memory_cgroups / MIB }
end

--- CRIU's restore time from the stats-restore image in `work_dir`.
local function criu_restore_ms(ctx, work_dir)
  local criu, err = ctx.core:criu_stats(work_dir .. "/stats-restore")
  if criu == nil then
    return nil, err
  end
  return criu.restore_ms
end

--- The CRIU work folder of a sandlot fork's restore
-- (sandboxes/<id>/log/fork-<ms>, see core/monitor/restore.c).
local function fork_work_dir(ctx, id)
  local log = ("%s/sandboxes/%s/log"):format(ctx.home, id)
  local dir = uv.fs_scandir(log)
  while dir do
    local name = uv.fs_scandir_next(dir)
    if name == nil then
      break
    elseif name:match "^fork%-%d+$" then
      return log .. "/" .. name
    end
  end
  return nil, "no CRIU work folder of the fork in " .. log
end

--- The create options of a sandlot fork: the source's limits, which the
-- raw script gives its forks too. A fork does not inherit them.
local function fork_options(sources)
  return { memory = sources.record.memory_bytes, pids = sources.record.pids_max }
end

local function sandlot_forks(ctx, sources, count)
  local forks, first_exec_ms = ctx.lua:fork(sources.snapshot, count, fork_options(sources))
  if forks == nil then
    return nil, first_exec_ms
  end
  local cgroups, err = {}, nil
  for i, fork in ipairs(forks) do
    cgroups[i], err = ctx.lua:memory_cgroup(fork)
  end
  local memory = #cgroups == count and fork_memory(cgroups)
  local restore_ms, work_dir
  if count == 1 then
    work_dir, err = fork_work_dir(ctx, forks[1].id)
  end
  if work_dir ~= nil then
    restore_ms, err = criu_restore_ms(ctx, work_dir)
  end
  for _, fork in ipairs(forks) do
    ctx.lua:kill(fork)
  end
  if not memory then
    return nil, err or "reading the forks' memory failed"
  elseif count == 1 and restore_ms == nil then
    return nil, err
  end
  return { first_exec_ms = first_exec_ms, restore_ms = restore_ms, pss_mib = memory.pss_mib,
    usage_mib = memory.usage_mib }
end

local function raw_forks(ctx, sources, count, target)
  local result, err = ctx.raw:fork(sources.dump.images, sources.lowerdirs,
    sources.record.memory_bytes, sources.record.pids_max, target, count)
  local memory
  if result ~= nil then
    local cgroups = {}
    for i, fork in ipairs(result.forks) do
      cgroups[i] = fork.memory_cgroup
    end
    memory, err = fork_memory(cgroups)
  end
  local restore_ms, restore_err
  if memory ~= nil and count == 1 then
    restore_ms, restore_err = criu_restore_ms(ctx, target .. "/fork-1/wd")
  end
  local destroyed, destroy_err = ctx.raw:destroy(target)
  if memory == nil then
    return nil, err
  elseif count == 1 and restore_ms == nil then
    return nil, restore_err
  elseif destroyed == nil then
    return nil, destroy_err
  end
  return { first_exec_ms = result.total_ms, restore_ms = restore_ms, pss_mib = memory.pss_mib,
    usage_mib = memory.usage_mib }
end

local function fork_metrics(count, size)
  local forks = count == 1 and "one fork" or ("%d forks started together"):format(count)
  local metrics = { { "first_exec_ms", forks .. ", until every first exec result", "ms" } }
  if count == 1 then
    metrics[#metrics + 1] = { "restore_ms", "one fork, CRIU restore time (stats-restore)", "ms" }
  end
  if count == size.memory_forks then
    local of = count == 1 and "1 fork" or ("%d forks"):format(count)
    metrics[#metrics + 1] = { "pss_mib", ("memory per fork, PSS (%s)"):format(of), "MiB" }
    metrics[#metrics + 1] = { "usage_mib", ("memory per fork, cgroup usage (%s)"):format(of),
      "MiB" }
  end
  return metrics
end

local function fork_rows(ctx, sources, size)
  for _, count in ipairs(size.forks) do
    local target = ("%s/raw-forks-%d-%d"):format(ctx.work, size.mib, count)
    local samples, err = schedule.run {
      runs = ctx.runs, warmup = ctx.warmup,
      a = function()
        return sandlot_forks(ctx, sources, count)
      end,
      b = function()
        return raw_forks(ctx, sources, count, target)
      end,
    }
    if samples == nil then
      return nil, err
    end
    comparison_rows(ctx, FORK_GROUP, label(size.mib) .. ": ", fork_metrics(count, size), samples)
  end
  return true
end

-- ---- pause, resume, rollback ----------------------------------------------

--- One pause, resume and rollback of a sandlot fork of the snapshot.
local function sandlot_lifecycle(ctx, fork, snap)
  local pause_ms, err = ctx.lua:pause(fork)
  if pause_ms == nil then
    return nil, err
  end
  local resume_ms, rollback_ms
  resume_ms, err = ctx.lua:resume(fork)
  if resume_ms == nil then
    return nil, err
  end
  rollback_ms, err = ctx.lua:rollback(fork, snap)
  if rollback_ms == nil then
    return nil, err
  end
  return { pause_ms = pause_ms, resume_ms = resume_ms, rollback_ms = rollback_ms }
end

--- The same for a raw fork of the dump.
local function raw_lifecycle(ctx, dir, sources)
  local paused, err = ctx.raw:pause(dir)
  if paused == nil then
    return nil, err
  end
  local resumed, rolled
  resumed, err = ctx.raw:resume(dir, sources.lowerdirs)
  if resumed == nil then
    return nil, err
  end
  rolled, err = ctx.raw:rollback(dir, sources.dump.images, sources.lowerdirs)
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

--- Pause, resume and roll back a fork of the snapshot on each side, again
-- and again.
local function lifecycle_rows(ctx, sources, size)
  local target = ("%s/raw-forks-%d-life"):format(ctx.work, size.mib)
  local forks, err = ctx.lua:fork(sources.snapshot, 1, fork_options(sources))
  local raw_fork, samples
  if forks ~= nil then
    raw_fork, err = ctx.raw:fork(sources.dump.images, sources.lowerdirs,
      sources.record.memory_bytes, sources.record.pids_max, target, 1)
  end
  if raw_fork ~= nil then
    samples, err = schedule.run {
      runs = ctx.runs, warmup = ctx.warmup,
      a = function()
        return sandlot_lifecycle(ctx, forks[1], sources.snapshot)
      end,
      b = function()
        return raw_lifecycle(ctx, target .. "/fork-1", sources)
      end,
    }
  end
  if forks ~= nil then
    ctx.lua:kill(forks[1])
  end
  ctx.raw:destroy(target)
  if samples == nil then
    return nil, err
  end
  comparison_rows(ctx, LIFECYCLE_GROUP, label(size.mib) .. ": ", lifecycle_metrics, samples)
  return true
end

--- The snapshot each side forks from, kept for the fork and life cycle
-- rows: sandlot's through sb:snapshot, the raw script's dump.
local function fork_sources(ctx, src, size)
  local snap, err = ctx.lua:snapshot(src.sb)
  if snap == nil then
    return nil, err
  end
  local dir = ("%s/raw-fork-source-%d"):format(ctx.work, size.mib)
  local record = src.record
  local dump
  dump, err = ctx.raw:dump(record.init_pid, record.cgroups.freezer, record.upper, dir)
  if dump == nil then
    snap:delete()
    remove_tree(dir)
    return nil, err
  end
  return {
    snapshot = snap, dump = dump, dir = dir, record = record,
    lowerdirs = dump.layer .. ":" .. record.lowerdirs,
  }
end

-- ---- one size -------------------------------------------------------------

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
  return { sb = sb, record = record, rss = rss }
end

local function forks_and_lifecycle(ctx, src, size)
  local sources, err = fork_sources(ctx, src, size)
  if sources == nil then
    return failed_row(ctx, FORK_GROUP, size, err)
  end
  local done
  done, err = fork_rows(ctx, sources, size)
  if not done then
    failed_row(ctx, FORK_GROUP, size, err)
  end
  done, err = lifecycle_rows(ctx, sources, size)
  if not done then
    failed_row(ctx, LIFECYCLE_GROUP, size, err)
  end
  sources.snapshot:delete()
  remove_tree(sources.dir)
end

local function run_size(ctx, size)
  ctx.log("process sandbox with %s: create and start the workload", label(size.mib))
  local src, err = prepare(ctx, size)
  if src == nil then
    return failed_row(ctx, SNAPSHOT_GROUP, size, err)
  end
  ctx.log("%s: workload holds %.0f MiB; snapshots, sandlot and raw CRIU alternating",
    label(size.mib), src.rss / MIB)
  ctx.add(report.row {
    group = SNAPSHOT_GROUP, name = label(size.mib) .. ": resident memory of the workload",
    unit = "MiB", sandlot = stats.summary { src.rss / MIB }, api = "/proc/self/statm",
    note = size == ctx.sizes[1] and "the workload's resident set while it is snapshotted and "
      .. "forked: its data and the interpreter's own pages" or nil,
  })
  local ok
  ok, err = snapshot_rows(ctx, src, size)
  if not ok then
    failed_row(ctx, SNAPSHOT_GROUP, size, err)
  end
  ctx.log("%s: forks, pause, resume and rollback", label(size.mib))
  forks_and_lifecycle(ctx, src, size)
  ctx.lua:kill(src.sb)
end

--- Run the process sandbox rows for every size in ctx.sizes.
function M.run(ctx)
  for _, size in ipairs(ctx.sizes) do
    run_size(ctx, size)
  end
end

return M
