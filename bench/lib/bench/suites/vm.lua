--- MicroVM rows: the process sandbox rows for QEMU microvm sandboxes,
-- sandlot against the same QMP commands sent by a plain script
-- (bench/raw_qmp.py).
--
-- The guest's clocks stop with its vCPUs, so a workload inside cannot see
-- its own pause: the pause is timed from QMP stop to the reply of cont on
-- both sides.
local proc = require "bench.proc"
local report = require "bench.report"
local schedule = require "bench.schedule"
local stats = require "bench.stats"

local M = {}

local MIB = 1024 * 1024
local LIFE_GROUP = "MicroVM sandboxes: create, exec"
local SNAPSHOT_GROUP = "MicroVM sandboxes: snapshot of a running VM"
local FORK_GROUP = "MicroVM sandboxes: forks of a snapshot"
local LIFECYCLE_GROUP = "MicroVM sandboxes: pause, resume and rollback"
local BASELINE = "raw QEMU (QMP)"

local function label(mib)
  return ("%d MB"):format(mib)
end

local function failed(ctx, group, name, err)
  ctx.add(report.row { group = group, name = name, unit = "ms", status = "failed",
    reason = tostring(err) })
end

--- Rows of one comparison: one per metric, sandlot against raw QEMU.
local function comparison_rows(ctx, group, prefix, metrics, samples)
  for _, metric in ipairs(metrics) do
    local key, name, unit = metric[1], metric[2], metric[3]
    local a, b = samples.a[key], samples.b[key]
    ctx.add(report.row {
      group = group, name = prefix .. name, unit = unit, sandlot = stats.summary(a),
      api = ctx.core.api, baseline_name = BASELINE, baseline = b and stats.summary(b),
      ratio = b and stats.pair_ratios(a, b) or nil,
    })
  end
end

--- The guest RAM file a running QEMU maps (mem-path of its memory backend).
local function ram_file(qemu_pid)
  local cmdline = proc.read_file(("/proc/%d/cmdline"):format(qemu_pid)) or ""
  return cmdline:match "mem%-path=([^,%z]+)"
end

-- ---- create and exec --------------------------------------------------------

--- Create VMs through the Lua API, each until the result of `true`, then
-- time exec round trips on the last one.
local function create_rows(ctx)
  local last
  local samples, err = schedule.run {
    runs = ctx.vm_creates, warmup = ctx.warmup,
    a = function(run)
      local sb, create_ms = ctx.lua:create { backend = "vm", memory = "256M" }
      if sb == nil then
        return nil, create_ms
      end
      if run == ctx.vm_creates then
        last = sb
      else
        ctx.lua:kill(sb)
      end
      return { create_ms = create_ms }
    end,
  }
  if samples == nil then
    return failed(ctx, LIFE_GROUP, "create until the first exec result", err)
  end
  ctx.add(report.row {
    group = LIFE_GROUP, name = "create until the first exec result", unit = "ms",
    sandlot = stats.summary(samples.a.create_ms), api = ctx.lua.api,
    note = "boot of a 256 MiB guest until the result of sb:exec \"true\"",
  })
  local round_trips
  round_trips, err = ctx.lua:exec_round_trips(last, ctx.vm_execs)
  ctx.lua:kill(last)
  if round_trips == nil then
    return failed(ctx, LIFE_GROUP, "exec round trip of `true`", err)
  end
  ctx.add(report.row {
    group = LIFE_GROUP, name = "exec round trip of `true`", unit = "ms",
    sandlot = stats.summary(round_trips), api = ctx.lua.api,
    note = ("sb:exec { \"true\" } %d times on one VM; p90 %s ms"):format(#round_trips,
      report.number(stats.percentile(round_trips, 90))),
  })
end

-- ---- snapshots --------------------------------------------------------------

local snapshot_metrics = {
  { "pause_ms", "pause (QMP stop until the reply of cont)", "ms" },
  { "ram_ms", "copy of the RAM file while stopped", "ms" },
  { "total_ms", "snapshot total time", "ms" },
  { "size_mib", "snapshot size (RAM, state, disk overlay)", "MiB" },
}

local function snapshot_rows(ctx, vm, mib)
  local vm_dir = ctx.home .. "/sandboxes/" .. vm.id
  local ram = ram_file(vm.qemu_pid)
  local count = 0
  local samples, err = schedule.run {
    runs = ctx.runs, warmup = ctx.warmup,
    a = function()
      count = count + 1
      local snap = ("sn-bench-%d-%d"):format(mib, count)
      local out, snapshot_err = ctx.core:vm_snapshot(vm.id, snap)
      if out == nil then
        return nil, snapshot_err
      end
      ctx.core:vm_snapshot_remove(snap)
      return { pause_ms = out.pause_ms, ram_ms = out.ram_ms, total_ms = out.total_ms,
        size_mib = out.size_bytes / MIB }
    end,
    b = function(run)
      local dir = ("%s/raw-vm-snapshot-%d-%s"):format(ctx.work, mib, run or "warmup")
      local out, snapshot_err = ctx.raw_qmp:snapshot(vm_dir, ram, dir)
      local size = out and ctx.core:size(dir)
      proc.output { "/bin/rm", "-rf", "--one-file-system", dir }
      if out == nil or size == nil then
        return nil, snapshot_err or "size of the raw snapshot failed"
      end
      return { pause_ms = out.pause_ms, ram_ms = out.ram_ms, total_ms = out.total_ms,
        size_mib = size / MIB }
    end,
  }
  if samples == nil then
    return failed(ctx, SNAPSHOT_GROUP, label(mib) .. ": snapshot", err)
  end
  comparison_rows(ctx, SNAPSHOT_GROUP, label(mib) .. ": ", snapshot_metrics, samples)
end

-- ---- forks ------------------------------------------------------------------

local function average_pss_mib(forks)
  local total = 0
  for _, fork in ipairs(forks) do
    total = total + fork.pss_kib
  end
  return total / #forks / 1024
end

--- Kept snapshots of both sides to fork from.
local function fork_sources(ctx, vm, mib)
  local snap = ("sn-bench-fork-%d"):format(mib)
  local ok, err = ctx.core:vm_snapshot(vm.id, snap)
  if not ok then
    return nil, err
  end
  local raw_dir = ("%s/raw-vm-fork-source-%d"):format(ctx.work, mib)
  ok, err = ctx.raw_qmp:snapshot(ctx.home .. "/sandboxes/" .. vm.id, ram_file(vm.qemu_pid),
    raw_dir)
  if not ok then
    ctx.core:vm_snapshot_remove(snap)
    return nil, err
  end
  return { snapshot = snap, raw_dir = raw_dir }
end

local function sandlot_forks(ctx, sources, count, seen)
  local out, err = ctx.core:vm_fork(sources.snapshot, count)
  if out == nil then
    return nil, err
  end
  seen.fork_dir, seen.argv = out.fork_dir, out.qemu_argv
  return { running_ms = out.running_ms, first_exec_ms = out.total_ms,
    pss_mib = average_pss_mib(out.forks) }
end

local function raw_forks(ctx, sources, count, seen, target)
  if seen.argv == nil then
    return nil, "no sandlot fork command line to start from"
  end
  local argv_file = ctx.work .. "/sandlot-fork.argv"
  proc.write_file(argv_file, seen.argv)
  local out, err = ctx.raw_qmp:fork(argv_file, seen.fork_dir,
    ctx.home .. "/snapshots/" .. sources.snapshot, sources.raw_dir, target, count)
  local destroyed, destroy_err = ctx.raw_qmp:destroy(target)
  if out == nil then
    return nil, err
  elseif destroyed == nil then
    return nil, destroy_err
  end
  return { running_ms = out.running_ms, first_exec_ms = out.total_ms,
    pss_mib = average_pss_mib(out.forks) }
end

local function fork_rows(ctx, vm, mib)
  local sources, err = fork_sources(ctx, vm, mib)
  if sources == nil then
    return failed(ctx, FORK_GROUP, label(mib) .. ": forks", err)
  end
  local seen = {}
  for _, count in ipairs(ctx.vm_forks) do
    local target = ("%s/raw-vm-forks-%d-%d"):format(ctx.work, mib, count)
    local samples
    samples, err = schedule.run {
      runs = ctx.runs, warmup = ctx.warmup,
      a = function()
        return sandlot_forks(ctx, sources, count, seen)
      end,
      b = function()
        return raw_forks(ctx, sources, count, seen, target)
      end,
    }
    if samples == nil then
      failed(ctx, FORK_GROUP, ("%s: %d forks"):format(label(mib), count), err)
    else
      local forks = count == 1 and "one fork" or ("%d forks started together"):format(count)
      comparison_rows(ctx, FORK_GROUP, label(mib) .. ": ", {
        { "running_ms", forks .. ", until every fork runs (reply to cont)", "ms" },
        { "first_exec_ms", forks .. ", until every first exec result", "ms" },
        { "pss_mib", ("memory per fork, PSS of QEMU (%s)"):format(forks), "MiB" },
      }, samples)
    end
  end
  ctx.core:vm_snapshot_remove(sources.snapshot)
  proc.output { "/bin/rm", "-rf", "--one-file-system", sources.raw_dir }
end

-- ---- pause, resume, rollback --------------------------------------------------

--- A VM of the raw script's own, booted with the command line of
-- sandlot's VM, with the same workload, and a raw snapshot of it.
local function raw_vm(ctx, vm, mib)
  local dir = ("%s/raw-vm-%d"):format(ctx.work, mib)
  local argv_file = ctx.work .. "/sandlot-boot.argv"
  local cmdline = proc.read_file(("/proc/%d/cmdline"):format(vm.qemu_pid)) or ""
  proc.write_file(argv_file, (cmdline:gsub("%z", "\n")))
  local booted, err = ctx.raw_qmp:boot(argv_file, ctx.home .. "/sandboxes/" .. vm.id,
    ram_file(vm.qemu_pid), dir, ctx.workload_file, mib)
  local snapshot = dir .. "-snapshot"
  if booted ~= nil then
    booted, err = ctx.raw_qmp:snapshot(dir, booted.ram, snapshot)
  end
  if booted == nil then
    ctx.raw_qmp:destroy(dir)
    return nil, err
  end
  return { dir = dir, snapshot = snapshot }
end

local function sandlot_lifecycle(ctx, vm, snap)
  local paused, err = ctx.core:vm_pause(vm.id)
  if paused == nil then
    return nil, err
  end
  local resumed, rolled
  resumed, err = ctx.core:vm_resume(vm.id)
  if resumed == nil then
    return nil, err
  end
  rolled, err = ctx.core:vm_rollback(vm.id, snap)
  if rolled == nil then
    return nil, err
  end
  return { pause_ms = paused.pause_ms, resume_ms = resumed.resume_ms,
    rollback_ms = rolled.rollback_ms }
end

local function raw_lifecycle(ctx, raw)
  local paused, err = ctx.raw_qmp:pause(raw.dir)
  if paused == nil then
    return nil, err
  end
  local resumed, rolled
  resumed, err = ctx.raw_qmp:resume(raw.dir)
  if resumed == nil then
    return nil, err
  end
  rolled, err = ctx.raw_qmp:rollback(raw.dir, raw.snapshot)
  if rolled == nil then
    return nil, err
  end
  return { pause_ms = paused.pause_ms, resume_ms = resumed.resume_ms,
    rollback_ms = rolled.rollback_ms }
end

--- Pause, resume and roll back sandlot's VM and the raw script's own VM,
-- each to a snapshot of itself.
local function lifecycle_rows(ctx, vm, mib)
  local snap = ("sn-bench-rollback-%d"):format(mib)
  local raw, err = raw_vm(ctx, vm, mib)
  local ok
  if raw ~= nil then
    ok, err = ctx.core:vm_snapshot(vm.id, snap)
  end
  local samples
  if ok then
    samples, err = schedule.run {
      runs = ctx.runs, warmup = ctx.warmup,
      a = function()
        return sandlot_lifecycle(ctx, vm, snap)
      end,
      b = function()
        return raw_lifecycle(ctx, raw)
      end,
    }
    ctx.core:vm_snapshot_remove(snap)
  end
  if raw ~= nil then
    ctx.raw_qmp:destroy(raw.dir)
    proc.output { "/bin/rm", "-rf", "--one-file-system", raw.snapshot }
  end
  if samples == nil then
    return failed(ctx, LIFECYCLE_GROUP, label(mib) .. ": pause, resume, rollback", err)
  end
  comparison_rows(ctx, LIFECYCLE_GROUP, label(mib) .. ": ", {
    { "pause_ms", "pause (state on disk, QEMU ended)", "ms" },
    { "resume_ms", "resume until the first exec result", "ms" },
    { "rollback_ms", "rollback to a snapshot until the first exec result", "ms" },
  }, samples)
end

-- ---- one size ---------------------------------------------------------------

local function start_workload(ctx, vm, mib)
  local ok, err = ctx.core:vm_spawn(vm.id, { "/usr/bin/python3", "-c", ctx.workload_script,
    tostring(mib) })
  if not ok then
    return nil, err
  end
  local deadline = proc.now_ms() + 300000
  while proc.now_ms() < deadline do
    local text = ctx.core:vm_read(vm.id, "/tmp/workload.ready")
    if text and tonumber(text) then
      return tonumber(text)
    end
    require("sandlot").sleep(500)
  end
  return nil, "the workload in the VM did not report ready within 300 s"
end

local function run_size(ctx, size)
  ctx.log("microVM with %s of workload data (%s guest)", label(size.mib), size.memory)
  local vm, err = ctx.core:vm_create(size.memory)
  if vm == nil then
    return failed(ctx, SNAPSHOT_GROUP, label(size.mib) .. ": all rows", err)
  end
  local rss
  rss, err = start_workload(ctx, vm, size.mib)
  if rss == nil then
    failed(ctx, SNAPSHOT_GROUP, label(size.mib) .. ": all rows", err)
  else
    ctx.add(report.row {
      group = SNAPSHOT_GROUP, name = label(size.mib) .. ": resident memory of the workload",
      unit = "MiB", sandlot = stats.summary { rss / MIB }, api = "guest /proc/self/statm",
      note = ("in a guest of %s"):format(size.memory),
    })
    snapshot_rows(ctx, vm, size.mib)
    ctx.log("%s microVM: forks", label(size.mib))
    fork_rows(ctx, vm, size.mib)
    ctx.log("%s microVM: pause, resume, rollback", label(size.mib))
    lifecycle_rows(ctx, vm, size.mib)
  end
  ctx.core:kill(vm.id)
end

function M.run(ctx)
  ctx.log("microVMs: %d creates", ctx.vm_creates)
  create_rows(ctx)
  for _, size in ipairs(ctx.vm_sizes) do
    run_size(ctx, size)
  end
end

return M
