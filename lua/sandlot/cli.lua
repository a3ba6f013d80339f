--- The host commands that manage sandboxes: sandlot ls, kill, rm, gc and
-- snapshots
-- (entries of the command table in lua/main.c). Each runs as the main
-- task and sets the exit status: 0, 1 when an operation failed, 2 on a
-- usage error.
local core = require "sandlot.core"
local check = require "sandlot.check"
local sandlot = require "sandlot"
local Sandbox = sandlot.Sandbox

local M = {}

local function report(fmt, ...)
  io.stderr:write("sandlot: ", fmt:format(...), "\n")
end

--- `message` ("ENAME: message: subject") without a trailing ": ID" or
-- ': "ID"', for a report that names the id in its own context.
local function without_subject(message, id)
  for _, subject in ipairs { id, '"' .. id .. '"' } do
    local tail = ": " .. subject
    if message:sub(-#tail) == tail then
      return message:sub(1, -#tail - 1)
    end
  end
  return message
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

--- Print `rows` (lists of strings) in aligned columns, the last one
-- unpadded.
local function print_table(rows)
  local widths = {}
  for _, row in ipairs(rows) do
    for i = 1, #row - 1 do
      widths[i] = math.max(widths[i] or 0, #row[i])
    end
  end
  for _, row in ipairs(rows) do
    local cells = {}
    for i = 1, #row - 1 do
      cells[i] = row[i] .. (" "):rep(widths[i] - #row[i])
    end
    cells[#row] = row[#row]
    io.stdout:write(table.concat(cells, "  "), "\n")
  end
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
  print_table(rows)
end

--- Run `action(subject)` (returning true, or nil and a message) for each
-- subject: print "<done> SUBJECT" on success, else report the failure
-- under `command`. The exit status is 1 when any failed.
local function for_each_subject(command, subjects, done, action)
  local status = 0
  for _, subject in ipairs(subjects) do
    local ok, message = action(subject)
    if ok then
      io.stdout:write(done, " ", subject, "\n")
    else
      report("%s %s: %s", command, check.subject(subject), without_subject(message, subject))
      status = 1
    end
  end
  core.set_exit_status(status)
end

--- sandlot kill ID...: kill each sandbox; prints "killed ID" for each.
function M.kill(...)
  local ids = { ... }
  if #ids == 0 then
    return usage("kill: missing ID")
  end
  for_each_subject("kill", ids, "killed", function(id)
    local sb, message = Sandbox.get(id)
    if not sb then
      return nil, message
    end
    return sb:kill()
  end)
end

--- "1 layer", "2 layers": `count` and the noun, with `many` (default
-- `one` .. "s") for any count but 1.
local function plural(count, one, many)
  return ("%d %s"):format(count, count == 1 and one or many or one .. "s")
end

--- What gc did to one sandbox, from its records before and after; nil
-- when nothing changed.
local function gc_change(before, after, now)
  if after and after.state ~= before.state then
    local reason = after._info.end_reason or after.state
    return ("%s -> %s (%s)"):format(before.state, after.state, reason)
  elseif after then
    return nil
  elseif before.state == "creating" then
    return "removed (it never started)"
  elseif before.state == "dead" and before._info.ended_at then
    return ("removed (ended %s ago)"):format(age(now - before._info.ended_at))
  end
  return ("%s -> removed"):format(before.state)
end

--- sandlot gc [-a]: run the core's gc, delete the records of sandboxes
-- that ended more than a day ago (-a: all ended ones), and print what
-- changed and how much of each kind was cleaned.
function M.gc(...)
  local keep = 86400
  for _, word in ipairs { ... } do
    if word == "-a" or word == "--all" then
      keep = 0
    else
      return usage("gc: unexpected argument '%s'", word)
    end
  end
  local before, message = Sandbox.list()
  local counts
  if before then
    counts, message = require("sandlot").gc { keep_ended = keep }
  end
  local after = counts and Sandbox.list()
  if not after then
    report("gc: %s", message)
    return core.set_exit_status(1)
  end
  local now = {}
  for _, sb in ipairs(after) do
    now[sb.id] = sb
  end
  local time = os.time()
  for _, sb in ipairs(before) do
    local change = gc_change(sb, now[sb.id], time)
    if change then
      io.stdout:write(("%s  %s\n"):format(sb.id, change))
    end
  end
  if counts.records > 0 then
    io.stdout:write(("gc: removed %s of ended sandboxes\n"):format(plural(counts.records, "record")))
  end
  local cleaned = { plural(counts.sandboxes, "sandbox", "sandboxes") }
  if counts.snapshots > 0 then
    cleaned[#cleaned + 1] = plural(counts.snapshots, "leftover snapshot")
  end
  if counts.layers > 0 then
    cleaned[#cleaned + 1] = plural(counts.layers, "unused layer")
  end
  if counts.mounts > 0 then
    cleaned[#cleaned + 1] = plural(counts.mounts, "mount of a deleted sandbox",
      "mounts of deleted sandboxes")
  end
  io.stdout:write("gc: cleaned ", table.concat(cleaned, ", "), "\n")
end

--- sandlot rm [-f] ID...: delete the records and directories of ended
-- sandboxes (-f: kill live ones first); prints "removed ID" for each.
function M.rm(...)
  local force, ids = false, {}
  for _, word in ipairs { ... } do
    if word == "-f" or word == "--force" then
      force = true
    elseif word:sub(1, 1) == "-" then
      return usage("rm: unknown option '%s'", word)
    else
      ids[#ids + 1] = word
    end
  end
  if #ids == 0 then
    return usage("rm: missing ID")
  end
  for_each_subject("rm", ids, "removed", function(id)
    local sb, message, name = Sandbox.get(id)
    local ok = sb ~= nil
    if ok and force and sb.state ~= "dead" then
      ok, message = sb:kill()
    end
    if ok then
      ok, message, name = sb:delete()
    end
    if not ok and name == "EBUSY" and not force and sb and sb.state ~= "dead" then
      message = ("EBUSY: sandbox is %s (kill it first, or use rm -f)"):format(sb.state)
    end
    return ok, message
  end)
end

--- "512B", "13.0M", "1.2G".
local function size_text(bytes)
  if bytes < 1024 then
    return ("%dB"):format(bytes)
  end
  local units = { "K", "M", "G", "T" }
  local value, unit = bytes / 1024, 1
  while value >= 1024 and unit < #units do
    value, unit = value / 1024, unit + 1
  end
  return ("%.1f%s"):format(value, units[unit])
end

--- sandlot snapshots rm REF...: delete snapshots by id, "name:tag" or
-- "name"; sandboxes started from them keep running.
local function remove_snapshots(refs)
  if #refs == 0 then
    return usage("snapshots rm: missing ID")
  end
  for_each_subject("snapshots rm", refs, "removed", sandlot.snapshots.delete)
end

--- sandlot snapshots [-s ID] [-n NAME[:TAG]]: list the snapshots of the
-- store, newest first. sandlot snapshots rm REF... deletes them.
function M.snapshots(...)
  local words = { ... }
  if words[1] == "rm" then
    return remove_snapshots({ table.unpack(words, 2) })
  end
  local filter, i = {}, 1
  while i <= #words do
    local word, value = words[i], words[i + 1]
    local key = (word == "--sandbox" or word == "-s") and "sandbox"
      or (word == "--name" or word == "-n") and "name" or nil
    if key == nil then
      return usage("snapshots: unexpected argument '%s'", word)
    elseif value == nil then
      return usage("snapshots: %s needs a value", word)
    end
    filter[key] = value
    i = i + 2
  end
  local rows = { { "ID", "NAME", "SANDBOX", "KIND", "SIZE", "AGE" } }
  local now = os.time()
  local ok, message = pcall(function()
    for snap in sandlot.snapshots.each(filter) do
      local name = snap.name or "-"
      if snap.tag then
        name = name .. ":" .. snap.tag
      end
      rows[#rows + 1] = { snap.id, name, snap.sandbox_id, snap.kind, size_text(snap.size),
        age(now - snap.created_at) }
    end
  end)
  if not ok then
    -- each raises with the position of this function in front.
    report("snapshots: %s", (tostring(message):gsub("^[^:]+:%d+: ", "")))
    return core.set_exit_status(1)
  end
  print_table(rows)
end

return M
