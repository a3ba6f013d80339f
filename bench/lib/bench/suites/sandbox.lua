--- Process sandbox life cycle rows: create to first exec, exec round trip
-- and kill, through the Lua API. They have no baseline: nothing outside
-- sandlot does the same steps.
local sandlot = require "sandlot"
local proc = require "bench.proc"
local report = require "bench.report"
local schedule = require "bench.schedule"
local stats = require "bench.stats"

local M = {}

local GROUP = "Process sandboxes: create, exec, kill"
local PARALLEL = 5

local function create_and_kill(ctx)
  local sb, create_ms = ctx.lua:create {}
  if sb == nil then
    return nil, create_ms
  end
  local kill_ms, err = ctx.lua:kill(sb)
  if kill_ms == nil then
    return nil, err
  end
  return { create_ms = create_ms, kill_ms = kill_ms }
end

--- PARALLEL creates started together in their own tasks, until every one
-- has the result of `true`.
local function create_in_parallel(ctx)
  local start = proc.now_ms()
  local tasks = {}
  for i = 1, PARALLEL do
    tasks[i] = sandlot.spawn(function()
      return assert(ctx.lua:create {})
    end)
  end
  local sandboxes, err = sandlot.wait_all(tasks)
  local all_ms = proc.now_ms() - start
  for _, t in ipairs(tasks) do
    local sb = t:wait()
    if type(sb) == "table" then
      ctx.lua:kill(sb)
    end
  end
  if sandboxes == nil then
    return nil, err
  end
  return { parallel_ms = all_ms }
end

local function add(ctx, name, samples, note)
  ctx.add(report.row {
    group = GROUP, name = name, unit = "ms", sandlot = stats.summary(samples),
    api = ctx.lua.api, note = note,
  })
end

local function failed(ctx, name, err)
  ctx.add(report.row { group = GROUP, name = name, unit = "ms", status = "failed",
    reason = tostring(err) })
end

local function exec_rows(ctx)
  local sb, err = ctx.lua:create {}
  local round_trips
  if sb ~= nil then
    round_trips, err = ctx.lua:exec_round_trips(sb, ctx.execs)
    ctx.lua:kill(sb)
  end
  if round_trips == nil then
    return failed(ctx, "exec round trip of `true`", err)
  end
  add(ctx, "exec round trip of `true`", round_trips,
    ("sb:exec { \"true\" } %d times on one sandbox; p90 %s ms"):format(#round_trips,
      report.number(stats.percentile(round_trips, 90))))
end

--- Create and kill ctx.creates sandboxes one after another, time
-- ctx.execs round trips of `true` in one sandbox, and ctx.runs batches of
-- PARALLEL creates started together.
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
      "from Sandbox.create until the result of sb:exec \"true\"")
    add(ctx, "kill until everything is released", samples.a.kill_ms)
  end

  exec_rows(ctx)

  local name = ("%d creates started together, until every first exec result"):format(PARALLEL)
  samples, err = schedule.run {
    runs = ctx.runs, warmup = ctx.warmup,
    a = function()
      return create_in_parallel(ctx)
    end,
  }
  if samples == nil then
    return failed(ctx, name, err)
  end
  add(ctx, name, samples.a.parallel_ms, "each in its own task")
end

return M
