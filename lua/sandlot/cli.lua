--- The host commands that manage sandboxes: sandlot ls, kill and gc
-- (entries of the command table in lua/main.c). Each runs as the main
-- task and sets the exit status: 0, 1 when an operation failed, 2 on a
-- usage error.
local core = require "sandlot.core"
local Sandbox = require("sandlot").Sandbox

local M = {}

local function report(fmt, ...)
  io.stderr:write("sandlot: ", fmt:format(...), "\n")
end

local function usage(fmt, ...)
  report(fmt, ...)
  io.stderr:write("Run 'sandlot --help' for usage.\n")
  core.set_exit_status(2)
end

--- "42s", "3m07s", "5h02m", "2d04h".
local function age(seconds)
  seconds = math.max(0, math.floor(seconds))
  if seconds < 60 then
    return ("%ds"):format(seconds)
  elseif seconds < 3600 then
    return ("%dm%02ds"):format(seconds // 60, seconds % 60)
  elseif seconds < 86400 then
    return ("%dh%02dm"):format(seconds // 3600, seconds % 3600 // 60)
  end
  return ("%dd%02dh"):format(seconds // 86400, seconds % 86400 // 3600)
end

--- sandlot ls [-a]: the sandboxes of the store that have not ended (all
-- of them with -a), oldest first.
function M.ls(...)
  local all = false
  for _, word in ipairs { ... } do
    if word == "-a" or word == "--all" then
      all = true
    else
      return usage("ls: unexpected argument '%s'", word)
    end
  end
  local list, message = Sandbox.list()
  if not list then
    report("ls: %s", message)
    return core.set_exit_status(1)
  end
  local now = os.time()
  local rows = { { "ID", "STATE", "TEMPLATE", "AGE" } }
  for _, sb in ipairs(list) do
    if all or sb.state ~= "dead" then
      rows[#rows + 1] = { sb.id, sb.state, sb.template, age(now - sb.created_at) }
    end
  end
  local widths = { 0, 0, 0 }
  for _, row in ipairs(rows) do
    for i = 1, 3 do
      widths[i] = math.max(widths[i], #row[i])
    end
  end
  local format = ("%%-%ds  %%-%ds  %%-%ds  %%s\n"):format(widths[1], widths[2], widths[3])
  for _, row in ipairs(rows) do
    io.stdout:write(format:format(table.unpack(row)))
  end
end

--- sandlot kill ID...: kill each sandbox; prints "killed ID" for each.
function M.kill(...)
  local ids = { ... }
  if #ids == 0 then
    return usage("kill: missing ID")
  end
  local status = 0
  for _, id in ipairs(ids) do
    local sb, message = Sandbox.get(id)
    local ok = sb ~= nil
    if sb then
      ok, message = sb:kill()
    end
    if ok then
      io.stdout:write("killed ", id, "\n")
    else
      report("kill %s: %s", id, message)
      status = 1
    end
  end
  core.set_exit_status(status)
end

--- sandlot gc: run the core's gc and print the sandboxes it cleaned.
function M.gc(...)
  if select("#", ...) > 0 then
    return usage("gc: unexpected argument '%s'", (...))
  end
  local before, message = Sandbox.list()
  local cleaned
  if before then
    cleaned, message = core.sandbox_gc()
  end
  local after = cleaned and Sandbox.list()
  if not after then
    report("gc: %s", message)
    return core.set_exit_status(1)
  end
  local now = {}
  for _, sb in ipairs(after) do
    now[sb.id] = sb
  end
  for _, sb in ipairs(before) do
    local later = now[sb.id]
    if later == nil then
      io.stdout:write(("%s  removed (it never started)\n"):format(sb.id))
    elseif later.state ~= sb.state then
      local reason = later._info.end_reason or later.state
      io.stdout:write(("%s  %s -> %s (%s)\n"):format(sb.id, sb.state, later.state, reason))
    end
  end
  io.stdout:write(("gc: cleaned %d sandbox%s\n"):format(cleaned, cleaned == 1 and "" or "es"))
end

return M
