--- MicroVM rows: the process sandbox rows for QEMU microvm sandboxes,
-- sandlot (Lua API) against the same QMP commands sent by a plain script
-- (bench/raw_qmp.py) to a VM of its own, booted with sandlot's command
-- line and running the same workload.
--
-- The guest's clocks stop with its vCPUs, so a workload inside cannot see
-- its own pause: the pause is timed from QMP stop to the reply of cont on
-- both sides.
local sandlot = require "sandlot"
local uv = require "luv"
local proc = require "bench.proc"
local report = require "bench.report"
local schedule = require "bench.schedule"
local stats = require "bench.stats"
local workload = require "bench.workload"

local M = {}

local MIB = 1024 * 1024
local LIFE_GROUP = "MicroVM sandboxes: create, exec"
local SNAPSHOT_GROUP = "MicroVM sandboxes: snapshot of a running VM"
local FORK_GROUP = "MicroVM sandboxes: forks of a snapshot"
local LIFECYCLE_GROUP = "MicroVM sandboxes: pause, resume and rollback"
local BASELINE = "raw QEMU (QMP)"
local READY = "/tmp/workload.ready"

local function label(mib)
  return ("%d MB"):format(mib)
end

local function failed(ctx, group, name, err)
  ctx.add(report.row { group = group, name = name, unit = "ms", status = "failed",
    reason = tostring(err) })
end

local function remove_tree(path)
  proc.output { "/bin/rm", "-rf", "--one-file-system", path }
end

--- Rows of one comparison: one per metric, sandlot against raw QEMU.
local function comparison_rows(ctx, group, prefix, metrics, samples)
  for _, metric in ipairs(metrics) do
    local key, name, unit = metric[1], metric[2], metric[3]
    local a, b = samples.a[key], samples.b[key]
    ctx.add(report.row {
      group = group, name = prefix .. name, unit = unit, sandlot = stats.summary(a),
      api = ctx.lua.api, baseline_name = BASELINE, baseline = b and stats.summary(b),
      ratio = b and stats.pair_ratios(a, b) or nil,
    })
  end
end

--- The command line of a running QEMU, one argument per line.
local function qemu_argv(pid)
  local cmdline = proc.read_file(("/proc/%d/cmdline"):format(pid)) or ""
  return (cmdline:gsub("%z", "\n"))
end

--- The guest RAM file a running QEMU maps (mem-path of its memory backend).
local function ram_file(pid)
  return qemu_argv(pid):match "mem%-path=([^,\n]+)"
end

--- Pss of a process in KiB (smaps_rollup).
local function pss_kib(pid)
  local text = proc.read_file(("/proc/%d/smaps_rollup"):format(pid)) or ""
  return tonumber(text:match "\nPss:%s+(%d+)")
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
  { "total_ms", "snapshot total time", "ms" },
  { "size_mib", "snapshot size (RAM, state, disk layer)", "MiB" },
}

--- One snapshot through sb:snapshot(), deleted after: its pause (the
-- snapshot's `pause` field), the call's time and the snapshot's size.
local function sandlot_snapshot(ctx, vm)
  local snap, total_ms = ctx.lua:snapshot(vm.sb)
  if snap == nil then
    return nil, total_ms
  end
  local pause_ms, size = snap.pause * 1000, snap.size
  local removed, err = snap:delete()
  if removed == nil then
    return nil, err
  end
  return { pause_ms = pause_ms, total_ms = total_ms, size_mib = size / MIB }
end

--- Allocated bytes of one file.
local function allocated(path)
  local stat = uv.fs_stat(path)
  return stat and stat.blocks * 512
end

--- One snapshot of the script's VM: its files are removed after, but its
-- disk layer stays, because the VM reads through it (as sandlot's).
local function raw_snapshot(ctx, vm, dir)
  local out, err = ctx.raw_qmp:snapshot(vm.raw.dir, dir)
  local size
  if out ~= nil then
    size, err = ctx.core:size(dir)
  end
  local layer = out and allocated(out.disk)
  remove_tree(dir)
  if size == nil or layer == nil then
    return nil, err or "no disk layer of the raw snapshot"
  end
  return { pause_ms = out.pause_ms, total_ms = out.total_ms, size_mib = (size + layer) / MIB }
end

local function snapshot_rows(ctx, vm, mib)
  local samples, err = schedule.run {
    runs = ctx.runs, warmup = ctx.warmup,
    a = function()
      return sandlot_snapshot(ctx, vm)
    end,
    b = function(run)
      return raw_snapshot(ctx, vm, ("%s/raw-vm-snapshot-%d-%s"):format(ctx.work, mib,
        run or "warmup"))
    end,
  }
  if samples == nil then
    return failed(ctx, SNAPSHOT_GROUP, label(mib) .. ": snapshot", err)
  end
  comparison_rows(ctx, SNAPSHOT_GROUP, label(mib) .. ": ", snapshot_metrics, samples)
end

-- ---- forks ------------------------------------------------------------------

--- Kept snapshots of both sides to fork from.
local function fork_sources(ctx, vm, mib)
  local snap, err = ctx.lua:snapshot(vm.sb)
  if snap == nil then
    return nil, err
  end
  local raw_dir = ("%s/raw-vm-fork-source-%d"):format(ctx.work, mib)
  local ok
  ok, err = ctx.raw_qmp:snapshot(vm.raw.dir, raw_dir)
  if not ok then
    snap:delete()
    remove_tree(raw_dir)
    return nil, err
  end
  return { snapshot = snap, raw_dir = raw_dir }
end

--- The milliseconds from the start of sl_vm_fork until QEMU's reply to
-- cont, from the vm.forked record in the fork's monitor log.
local function fork_running_ms(ctx, id)
  local log = proc.read_file(("%s/sandboxes/%s/log/monitor.log"):format(ctx.home, id)) or ""
  local running = log:match "vm%.forked[^\n]*running_ms=([%d.]+)"
  if running == nil then
    return nil, "no vm.forked record with running_ms in the monitor log of " .. id
  end
  return tonumber(running)
end

--- What one batch of forks shows of each fork: the slowest fork's time
-- until it ran, and the average Pss of their QEMUs in MiB.
local function sandlot_fork_readings(ctx, forks, seen)
  local slowest, pss = 0, 0
  for _, fork in ipairs(forks) do
    local info, err = fork:info()
    if info == nil then
      return nil, err
    end
    local running
    running, err = fork_running_ms(ctx, fork.id)
    local kib = pss_kib(info.init_pid)
    if running == nil or kib == nil then
      return nil, err or ("no smaps_rollup of QEMU %d"):format(info.init_pid)
    end
    slowest, pss = math.max(slowest, running), pss + kib
    if seen.argv == nil then
      seen.argv = qemu_argv(info.init_pid)
      seen.fork_dir = ctx.home .. "/sandboxes/" .. fork.id
    end
  end
  return { running_ms = slowest, pss_mib = pss / #forks / 1024 }
end

local function sandlot_forks(ctx, sources, count, seen)
  local forks, first_exec_ms = ctx.lua:fork(sources.snapshot, count)
  if forks == nil then
    return nil, first_exec_ms
  end
  local readings, err = sandlot_fork_readings(ctx, forks, seen)
  for _, fork in ipairs(forks) do
    ctx.lua:kill(fork)
  end
  if readings == nil then
    return nil, err
  end
  readings.first_exec_ms = first_exec_ms
  return readings
end

local function raw_forks(ctx, sources, count, seen, target)
  if seen.argv == nil then
    return nil, "no sandlot fork command line to start from"
  end
  local argv_file = ctx.work .. "/sandlot-fork.argv"
  proc.write_file(argv_file, seen.argv)
  local sandlot_snapshot_dir = ("%s/snapshots/%s/vm"):format(ctx.home, sources.snapshot.id)
  local out, err = ctx.raw_qmp:fork(argv_file, seen.fork_dir, sandlot_snapshot_dir,
    sources.raw_dir, target, count)
  local destroyed, destroy_err = ctx.raw_qmp:destroy(target)
  if out == nil then
    return nil, err
  elseif destroyed == nil then
    return nil, destroy_err
  end
  local slowest, pss = 0, 0
  for _, fork in ipairs(out.forks) do
    slowest = math.max(slowest, fork.running_ms - fork.start_ms)
    pss = pss + fork.pss_kib
  end
  return { running_ms = slowest, first_exec_ms = out.total_ms,
    pss_mib = pss / #out.forks / 1024 }
end

local function fork_metrics(count)
  local forks = count == 1 and "one fork" or ("%d forks started together"):format(count)
  local running = count == 1 and "one fork, from its start until QEMU replied to cont"
    or forks .. ", the slowest from its start until QEMU replied to cont"
  return {
    { "running_ms", running, "ms" },
    { "first_exec_ms", forks .. ", until every first exec result", "ms" },
    { "pss_mib", ("memory per fork, PSS of QEMU (%s)"):format(forks), "MiB" },
  }
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
      comparison_rows(ctx, FORK_GROUP, label(mib) .. ": ", fork_metrics(count), samples)
    end
  end
  sources.snapshot:delete()
  remove_tree(sources.raw_dir)
end

-- ---- pause, resume, rollback --------------------------------------------------

local function sandlot_lifecycle(ctx, vm, snap)
  local pause_ms, err = ctx.lua:pause(vm.sb)
  if pause_ms == nil then
    return nil, err
  end
  local resume_ms, rollback_ms
  resume_ms, err = ctx.lua:resume(vm.sb)
  if resume_ms == nil then
    return nil, err
  end
  rollback_ms, err = ctx.lua:rollback(vm.sb, snap)
  if rollback_ms == nil then
    return nil, err
  end
  return { pause_ms = pause_ms, resume_ms = resume_ms, rollback_ms = rollback_ms }
end

local function raw_lifecycle(ctx, vm, snapshot_dir)
  local paused, err = ctx.raw_qmp:pause(vm.raw.dir)
  if paused == nil then
    return nil, err
  end
  local resumed, rolled
  resumed, err = ctx.raw_qmp:resume(vm.raw.dir)
  if resumed == nil then
    return nil, err
  end
  rolled, err = ctx.raw_qmp:rollback(vm.raw.dir, snapshot_dir)
  if rolled == nil then
    return nil, err
  end
  return { pause_ms = paused.pause_ms, resume_ms = resumed.resume_ms,
    rollback_ms = rolled.rollback_ms }
end

--- Pause, resume and roll back sandlot's VM and the script's VM, each to a
-- snapshot of itself.
local function lifecycle_rows(ctx, vm, mib)
  local snap, err = ctx.lua:snapshot(vm.sb)
  local raw_snapshot_dir = ("%s/raw-vm-rollback-%d"):format(ctx.work, mib)
  local raw_ok, samples
  if snap ~= nil then
    raw_ok, err = ctx.raw_qmp:snapshot(vm.raw.dir, raw_snapshot_dir)
  end
  if raw_ok then
    samples, err = schedule.run {
      runs = ctx.runs, warmup = ctx.warmup,
      a = function()
        return sandlot_lifecycle(ctx, vm, snap)
      end,
      b = function()
        return raw_lifecycle(ctx, vm, raw_snapshot_dir)
      end,
    }
  end
  if snap ~= nil then
    snap:delete()
  end
  remove_tree(raw_snapshot_dir)
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

--- Start the workload in sandlot's VM and wait until it reports ready:
-- its resident bytes.
local function start_workload(ctx, sb, mib)
  local started, err = sb:exec(workload.command(ctx.workload_script, mib))
  if started == nil then
    return nil, err
  end
  local deadline = proc.now_ms() + 300000
  while proc.now_ms() < deadline do
    local result = sb:exec { "cat", READY }
    if result and result.exit_code == 0 and tonumber(result.stdout) then
      return tonumber(result.stdout)
    end
    sandlot.sleep(500)
  end
  return nil, "the workload in the VM did not report ready within 300 s"
end

--- A VM of the raw script's own, booted with the command line of
-- sandlot's VM (before sandlot's first snapshot switches its disk), with
-- the same workload.
local function boot_raw_vm(ctx, sb, qemu_pid, mib)
  local dir = ("%s/raw-vm-%d"):format(ctx.work, mib)
  local argv_file = ctx.work .. "/sandlot-boot.argv"
  proc.write_file(argv_file, qemu_argv(qemu_pid))
  local booted, err = ctx.raw_qmp:boot(argv_file, ctx.home .. "/sandboxes/" .. sb.id,
    ram_file(qemu_pid), dir, ctx.workload_file, mib)
  if booted == nil then
    ctx.raw_qmp:destroy(dir)
    return nil, err
  end
  return { dir = dir }
end

--- sandlot's VM of one size with its workload, and the script's VM.
local function prepare(ctx, size)
  local sb, err = sandlot.Sandbox.create { backend = "vm", memory = size.memory }
  if sb == nil then
    return nil, err
  end
  local info, rss, raw
  info, err = sb:info()
  if info ~= nil then
    rss, err = start_workload(ctx, sb, size.mib)
  end
  if rss ~= nil then
    raw, err = boot_raw_vm(ctx, sb, info.init_pid, size.mib)
  end
  if raw == nil then
    ctx.lua:kill(sb)
    return nil, err
  end
  return { sb = sb, rss = rss, raw = raw }
end

local function run_size(ctx, size)
  ctx.log("microVM with %s of workload data (%s guest), and the script's VM", label(size.mib),
    size.memory)
  local vm, err = prepare(ctx, size)
  if vm == nil then
    return failed(ctx, SNAPSHOT_GROUP, label(size.mib) .. ": all rows", err)
  end
  ctx.add(report.row {
    group = SNAPSHOT_GROUP, name = label(size.mib) .. ": resident memory of the workload",
    unit = "MiB", sandlot = stats.summary { vm.rss / MIB }, api = "guest /proc/self/statm",
    note = ("in a guest of %s"):format(size.memory),
  })
  snapshot_rows(ctx, vm, size.mib)
  ctx.log("%s microVM: forks", label(size.mib))
  fork_rows(ctx, vm, size.mib)
  ctx.log("%s microVM: pause, resume, rollback", label(size.mib))
  lifecycle_rows(ctx, vm, size.mib)
  ctx.lua:kill(vm.sb)
  ctx.raw_qmp:destroy(vm.raw.dir)
end

function M.run(ctx)
  ctx.log("microVMs: %d creates", ctx.vm_creates)
  create_rows(ctx)
  for _, size in ipairs(ctx.vm_sizes) do
    run_size(ctx, size)
  end
end

return M
