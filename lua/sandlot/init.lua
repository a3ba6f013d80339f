--- The public sandlot module: tasks on the host's event loop, and
-- sandboxes (sandlot.Sandbox, see sandlot/sandbox.lua).
--
-- Functions marked "suspends" must run inside a task: the main script, a
-- REPL chunk, or a function started with sandlot.spawn. Elsewhere (a luv
-- callback, a plain coroutine) they raise an error that names the function.
local core = require "sandlot.core"
local task = require "sandlot.task"
local Sandbox = require "sandlot.sandbox"
local check = require "sandlot.check"
require "sandlot.exec"
require "sandlot.files"
local snapshots = require "sandlot.snapshot"

local sandlot = {
  version = core.version,
  inspect = require "sandlot.inspect",

  --- Start fn(...) as a new task and return the task object. It first runs
  -- on a later loop iteration.
  spawn = core.spawn,

  --- Suspend the running task for ms milliseconds. Suspends.
  sleep = core.sleep,

  --- Call start(done) and suspend until a callback calls done(...); returns
  -- the arguments given to done. Bridges luv callbacks into tasks:
  --   local err, stat = sandlot.await(function(done) uv.fs_stat(path, done) end)
  -- start must not suspend. After a cancellation, done does nothing; stop
  -- the operation yourself if it must not go on. Suspends.
  await = core.await,

  --- The running task, or nil outside tasks.
  current = core.current,

  --- The error value that a cancelled task raises at its suspension point.
  -- Compare with it to rethrow after cleanup: `if err == sandlot.cancelled`.
  cancelled = core.cancelled,

  wait_all = task.wait_all,
  wait_any = task.wait_any,
  log = {},

  Sandbox = Sandbox,

  --- Snapshots: get, list (pages), each (an iterator over all pages) and
  -- delete; see sandlot/snapshot.lua.
  snapshots = snapshots,

  --- Use the store at `path` (absolute) in this process instead of
  -- $SANDLOT_HOME or the default; call it before the first sandbox call.
  set_home = core.set_home,

  --- The store root this process uses, or will use on its first
  -- sandbox call.
  home = core.home,
}

--- How long sandlot.gc() keeps the records of ended sandboxes by
-- default, in seconds: one day, so that `sandlot ls -a` still shows how
-- recent sandboxes ended.
local KEEP_ENDED = 86400

--- Clean up what crashed hosts and monitors left (see sl_sandbox_gc in
-- core/sandbox.h), then delete the records of sandboxes that ended at
-- least `keep_ended` seconds ago (option, default one day, 0 for every
-- ended sandbox, false to keep them all). Returns a table of counts:
-- sandboxes (released or marked dead), mounts (of sandboxes without a
-- record), snapshots (left by a crashed take or delete), layers (that
-- nothing used any more) and records (of ended sandboxes, deleted).
-- Suspends.
function sandlot.gc(options)
  options = options or {}
  check.arg("sandlot.gc", 1, options, "table")
  check.options("sandlot.gc", options, { keep_ended = { "number", "boolean" } })
  local keep = options.keep_ended
  if keep == nil then
    keep = KEEP_ENDED
  end
  if keep == true then
    check.raise("sandlot.gc: option keep_ended must be seconds or false, got true")
  end
  if keep and (math.tointeger(keep) == nil or keep < 0) then
    return check.fail("EINVAL", "invalid keep_ended: %s (expected whole seconds >= 0, or false)",
      tostring(keep))
  end
  return core.sandbox_gc(keep and math.tointeger(keep) or nil)
end

--- sandlot.log.info(event, fmt, ...) and the other levels write one
-- key=value record to the host's log sink (stderr, threshold SANDLOT_LOG).
for _, level in ipairs { "debug", "info", "warn", "error" } do
  sandlot.log[level] = function(event, fmt, ...)
    core.log(level, event, fmt and fmt:format(...) or "")
  end
end

return sandlot
