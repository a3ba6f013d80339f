--- Process sandbox life cycle rows: create to first exec, exec round trip
-- and kill. They have no baseline: nothing outside sandlot does the same
-- steps.
local report = require "bench.report"
local schedule = require "bench.schedule"
local stats = require "bench.stats"

local M = {}

local GROUP = "Process sandboxes: create, exec, kill"

local function create_and_kill(ctx)
  local sb, err = ctx.core:create(nil)
  if sb == nil then
    return nil, err
  end
  ctx.sandboxes[sb.id] = true
  local killed, kill_err = ctx.core:kill(sb.id)
  ctx.sandboxes[sb.id] = nil
  if killed == nil then
    return nil, kill_err
  end
  return { create_ms = sb.create_ms, kill_ms = killed.kill_ms }
end

local function add(ctx, name, samples, note)
  ctx.add(report.row {
    group = GROUP, name = name, unit = "ms", sandlot = stats.summary(samples),
    api = ctx.core.api, note = note,
  })
end

local function failed(ctx, name, err)
  ctx.add(report.row { group = GROUP, name = name, unit = "ms", status = "failed",
    reason = tostring(err) })
end

--- Create and kill ctx.creates sandboxes one after another, then time
-- ctx.execs round trips of `true` in one sandbox.
function M.run(ctx)
  ctx.log("sandboxes: %d creates, %d execs", ctx.creates, ctx.execs)
  local samples, err = schedule.run {
    runs = ctx.creates, warmup = ctx.warmup,
    a = function()
      return create_and_kill(ctx)
    end,
  }
  if samples == nil then
    failed(ctx, "create until the first exec result", err)
  else
    add(ctx, "create until the first exec result", samples.a.create_ms,
      "from the create call until `true`, run through the agent, has exited")
    add(ctx, "kill until everything is released", samples.a.kill_ms)
  end

  local sb
  sb, err = ctx.core:create(nil)
  local round_trips
  if sb ~= nil then
    ctx.sandboxes[sb.id] = true
    round_trips, err = ctx.core:exec_round_trips(sb.id, ctx.execs)
    ctx.core:kill(sb.id)
    ctx.sandboxes[sb.id] = nil
  end
  if round_trips == nil then
    failed(ctx, "exec round trip of `true`", err)
    return
  end
  add(ctx, "exec round trip of `true`", round_trips,
    ("%d round trips on one connection; p90 %s ms"):format(#round_trips,
      report.number(stats.percentile(round_trips, 90))))
end

return M
