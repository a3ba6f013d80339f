--- Snapshots, pause and rollback: the methods sandbox:snapshot,
-- sandbox:pause, sandbox:resume and sandbox:rollback, and the
-- sandlot.snapshots module (get, list, each, delete) that this file
-- returns.
--
-- A snapshot object is the catalog's record. Its fields: id, name, tag,
-- labels, sandbox_id (the sandbox it was taken of, which may be gone),
-- parent_id, template, kind ("full" for memory and files, "fs" for files
-- only), backend, size (bytes), created_at (seconds since the epoch). One returned by
-- sandbox:snapshot also has pause (seconds the sandbox was frozen) and
-- duration (seconds of the call).
local core = require "sandlot.core"
local check = require "sandlot.check"
local Sandbox = require "sandlot.sandbox"

local fail = check.fail

local Snapshot = {}
Snapshot.__index = Snapshot
Snapshot.__name = "sandlot.Snapshot"

local function wrap(record)
  return setmetatable(record, Snapshot)
end

function Snapshot:__tostring()
  local name = self.name and (" " .. self.name .. (self.tag and ":" .. self.tag or "")) or ""
  return ("sandlot.Snapshot (%s%s, %s)"):format(self.id, name, self.kind)
end

--- The reference a call takes: a snapshot object, an id, "name:tag" or
-- "name" (the newest snapshot with that name). Raises on a wrong type;
-- returns the EINVAL fail tuple for a string with a NUL byte.
local function reference(fname, position, value)
  if getmetatable(value) == Snapshot then
    return value.id
  end
  if type(value) ~= "string" then
    check.raise(("%s: argument %d must be a snapshot object or a string (id, \"name:tag\" or "
      .. "\"name\"), got %s"):format(fname, position, type(value)))
  end
  local _, message, name = check.text("snapshot reference", value)
  if message then
    return nil, message, name
  end
  return value
end

--- The `wait` option in milliseconds (0 when nil), or the EINVAL fail
-- tuple outside 0 to 3600 seconds.
local function wait_ms(value)
  if value == nil then
    return 0
  end
  if not (value >= 0 and value <= 3600) then
    return fail("EINVAL", "invalid wait: %s (expected 0 to 3600 seconds)", tostring(value))
  end
  return math.floor(value * 1000)
end

--- A sorted list of "key=value" from the labels table. Raises on wrong
-- types; returns the EINVAL fail tuple for a key that is empty or has
-- "=", or a key or value with a NUL byte.
local function label_list(fname, labels)
  local list = {}
  for key, value in pairs(labels or {}) do
    if type(key) ~= "string" or (type(value) ~= "string" and type(value) ~= "number") then
      check.raise(fname .. ": labels must map names to strings or numbers")
    end
    local _, message, name = check.pair_name("label name", key)
    if not message then
      _, message, name = check.text(("value of label %s"):format(key), tostring(value))
    end
    if message then
      return nil, message, name
    end
    list[#list + 1] = key .. "=" .. tostring(value)
  end
  table.sort(list)
  return list
end

--- nil, or the EINVAL fail tuple for the first string option among
-- `keys` of `options` that has a NUL byte.
local function check_texts(options, keys)
  for _, key in ipairs(keys) do
    if type(options[key]) == "string" then
      local _, message, name = check.text(key, options[key])
      if message then
        return message, name
      end
    end
  end
end

--- Keep this host's agent connection to the sandbox from sending new
-- requests and from reconnecting while its tree is dumped, so that no
-- connection from this host is opened meanwhile. The connection is made
-- (not connected) when there is none yet, so that the requests other
-- tasks start during the dump wait in it. Returns a to-be-closed value
-- that lets it go on again (also when the task fails or is cancelled),
-- unless `kept` was set, and the connection.
local function hold_agent(sandbox)
  local agent = sandbox:_open_agent()
  if agent then
    Sandbox._hold_agent(agent, "dump")
  end
  local hold = { kept = false }
  return setmetatable(hold, {
    __close = function()
      if agent and not hold.kept then
        Sandbox._release_agent(agent)
      end
    end,
  }), agent
end

local snapshot_options = {
  name = "string", tag = "string", labels = "table", memory = "boolean", wait = "number",
}

--- Snapshot the sandbox: its memory and files at one instant (memory =
-- false: its files only, from which new sandboxes boot a fresh agent).
-- The sandbox pauses only for the dump and continues with the same id.
-- Options: name, tag (needs a name), labels (table key = value), memory
-- (default true), wait (seconds to wait when another operation runs on
-- the sandbox; default 0: EBUSY at once). Returns the snapshot. Suspends.
function Sandbox:snapshot(options)
  check.self("sandbox:snapshot", self, Sandbox)
  options = options or {}
  check.arg("sandbox:snapshot", 1, options, "table")
  check.options("sandbox:snapshot", options, snapshot_options)
  core.async_check("sandbox:snapshot")
  local wait, message, name = wait_ms(options.wait)
  if not wait then
    return nil, message, name
  end
  local labels
  labels, message, name = label_list("sandbox:snapshot", options.labels)
  if not labels then
    return nil, message, name
  end
  message, name = check_texts(options, { "name", "tag" })
  if message then
    return nil, message, name
  end
  local request = {
    name = options.name,
    tag = options.tag,
    labels = labels,
    files_only = options.memory == false,
    wait_ms = wait,
  }
  local record
  do
    local _ <close> = hold_agent(self)
    record, message, name = core.sandbox_snapshot(self.id, request)
  end
  if not record then
    return nil, message, name
  end
  return wrap(record)
end

local pause_options = { memory = "boolean", wait = "number" }

--- Dump the sandbox to disk and stop it: state "paused", no process, the
-- same id; its memory (unless memory = false) and files stay on disk.
-- Process handles of this host wait and re-attach after sandbox:resume.
-- Options: memory (default true; false keeps the files only, and a
-- resume boots a fresh agent on them), wait (as in sandbox:snapshot).
-- Suspends.
function Sandbox:pause(options)
  check.self("sandbox:pause", self, Sandbox)
  options = options or {}
  check.arg("sandbox:pause", 1, options, "table")
  check.options("sandbox:pause", options, pause_options)
  core.async_check("sandbox:pause")
  local wait, message, name = wait_ms(options.wait)
  if not wait then
    return nil, message, name
  end
  local hold <close>, agent = hold_agent(self)
  local ok
  ok, message, name = core.sandbox_pause(self.id, options.memory == false, wait)
  if not ok then
    return nil, message, name
  end
  if agent then
    -- Until the resume: there is no agent to reach.
    hold.kept = true
    Sandbox._hold_agent(agent, "paused")
  end
  self.state = "paused"
  self._info.state = "paused"
  return true
end

--- Restore a paused sandbox with the same id: its processes continue
-- from the pause (or a fresh agent starts after a pause of the files
-- only), and this host's process handles re-attach where they were.
-- Resuming a running sandbox changes nothing. Its timeout counts again
-- from now. Suspends.
function Sandbox:resume()
  check.self("sandbox:resume", self, Sandbox)
  local info, message, name = core.sandbox_resume(self.id)
  if not info then
    return nil, message, name
  end
  Sandbox._update(self, info)
  local agent = self:_agent_connection()
  if agent then
    Sandbox._release_agent(agent)
  end
  return true
end

--- Put the sandbox back to the state of `snapshot` (an object, id,
-- "name:tag" or "name") in place. It keeps its id, hostname and timeout,
-- and gets the processes, memory and files of the snapshot. The snapshot must have
-- been taken of this sandbox or of one of its ancestors (EINVAL). Process
-- handles of this host from before fail with ECANCELED, because their
-- processes went back in time: get new ones with sandbox:process(id).
-- After a failed restore the sandbox has ended ("rollback_failed").
-- Suspends.
function Sandbox:rollback(snapshot)
  check.self("sandbox:rollback", self, Sandbox)
  local ref, bad, bad_name = reference("sandbox:rollback", 1, snapshot)
  if not ref then
    return nil, bad, bad_name
  end
  core.async_check("sandbox:rollback")
  local hold <close>, agent = hold_agent(self)
  local ok, message, name = core.sandbox_rollback(self.id, ref)
  local info = core.sandbox_get(self.id)
  if info then
    Sandbox._update(self, info)
  end
  if agent and (ok or self.state == "dead") then
    hold.kept = true
    local why = ok and ("sandbox rolled back to %s: get new process handles with "
      .. "sandbox:process(id)"):format(ref) or ("sandbox has ended: %s"):format(self.id)
    agent:shutdown(ok and "ECANCELED" or "ESRCH", why)
  end
  if not ok then
    return nil, message, name
  end
  return true
end

-- ---- sandlot.snapshots ----

local snapshots = { Snapshot = Snapshot }

--- The snapshot for a reference (an object, id, "name:tag" or "name");
-- ENOENT when there is none. Suspends.
function snapshots.get(ref)
  local id, message, name = reference("sandlot.snapshots.get", 1, ref)
  if not id then
    return nil, message, name
  end
  local record
  record, message, name = core.snapshot_get(id)
  if not record then
    return nil, message, name
  end
  return wrap(record)
end

--- Delete a snapshot and its files. Sandboxes started from it keep
-- running; its layer stays until none of them uses it. ENOENT for an
-- unknown or already deleted snapshot. Suspends.
function snapshots.delete(ref)
  local id, message, name = reference("sandlot.snapshots.delete", 1, ref)
  if not id then
    return nil, message, name
  end
  return core.snapshot_delete(id)
end

--- Delete this snapshot (see sandlot.snapshots.delete). Suspends.
function Snapshot:delete()
  check.self("snapshot:delete", self, Snapshot)
  return core.snapshot_delete(self.id)
end

local list_options = {
  sandbox = { "string", "table" }, name = "string", label = { "string", "table" },
  limit = "number", cursor = "string",
}

local Page = {}
Page.__index = Page
Page.__name = "sandlot.snapshots.page"

local list

--- The page after this one, or nil after the last page. Suspends.
function Page:next()
  if not self.has_next then
    return nil
  end
  local filter = {}
  for key, value in pairs(self._filter) do
    filter[key] = value
  end
  filter.cursor = self.cursor
  return list(filter)
end

local function label_filter(label)
  if type(label) == "string" then
    return label
  end
  local key, value = next(label)
  if key == nil or next(label, key) ~= nil then
    return nil
  end
  return key .. "=" .. tostring(value)
end

--- One page of snapshots, newest first: {items, has_next, cursor} with
-- page:next(). Filters: sandbox (an object or id; the snapshots taken of
-- it, also after it was deleted), name (a name, "name:tag" or an id) and
-- label ("key=value" or a table with one label). limit is 1 to 1000
-- (default 50), and cursor, a page's cursor, asks for the page after it. Unknown names and
-- sandboxes give an empty page. Suspends.
function list(filter)
  filter = filter or {}
  check.arg("sandlot.snapshots.list", 1, filter, "table")
  check.options("sandlot.snapshots.list", filter, list_options)
  local query = { ref = filter.name, limit = filter.limit, cursor = filter.cursor }
  if type(filter.sandbox) == "table" then
    query.sandbox = filter.sandbox.id
  else
    query.sandbox = filter.sandbox
  end
  if filter.label ~= nil then
    query.label = label_filter(filter.label)
    if query.label == nil then
      return fail("EINVAL", "invalid label filter (expected \"key=value\" or a table with one label)")
    end
  end
  local message, name = check_texts({ name = query.ref, sandbox = query.sandbox, label = query.label,
    cursor = query.cursor }, { "name", "sandbox", "label", "cursor" })
  if message then
    return nil, message, name
  end
  if filter.limit ~= nil and math.type(filter.limit) ~= "integer" then
    return fail("EINVAL", "invalid limit: %s (expected a whole number from 1 to 1000)",
      tostring(filter.limit))
  end
  local page, message, name = core.snapshot_list(query)
  if not page then
    return nil, message, name
  end
  for i, record in ipairs(page.items) do
    page.items[i] = wrap(record)
  end
  page._filter = filter
  return setmetatable(page, Page)
end

snapshots.list = list

--- Iterate over every snapshot that matches `filter` (as in list, whose
-- limit sets the page size), page by page:
--   for snap in sandlot.snapshots.each{sandbox = sb} do ... end
-- Raises on a failure. Suspends.
function snapshots.each(filter)
  filter = filter or {}
  check.arg("sandlot.snapshots.each", 1, filter, "table")
  local page, index = nil, 0
  local copy = {}
  for key, value in pairs(filter) do
    copy[key] = value
  end
  return function()
    if page == nil then
      local message
      page, message = list(copy)
      if not page then
        error(message, 2)
      end
    end
    index = index + 1
    while page.items[index] == nil do
      if not page.has_next then
        return nil
      end
      local message
      page, message = page:next()
      if not page then
        error(message, 2)
      end
      index = 1
    end
    return page.items[index]
  end
end

return snapshots
