--- Sandbox objects: create, look up, list, freeze, thaw, kill.
--
-- A sandbox object refers to its sandbox by id and reaches the agent in
-- it through the agent socket the core reports, so objects for one
-- sandbox made in different sandlot processes (Sandbox.get) all work.
-- Commands and processes are in sandlot/exec.lua, files in
-- sandlot/files.lua, snapshots, pause and rollback in
-- sandlot/snapshot.lua; they add methods to this class.
--
-- Methods that talk to the core or the agent suspend, so they run only in
-- tasks. Expected failures return nil, "ENAME: message", "ENAME"; wrong
-- argument types and unknown option names raise.
local core = require "sandlot.core"
local check = require "sandlot.check"

local Sandbox = {}
Sandbox.__index = Sandbox
Sandbox.__name = "sandlot.Sandbox"

local fail = check.fail

--- Agent connections by socket path. Weak: a connection closes once no
-- sandbox object or process handle uses it.
local agents = setmetatable({}, { __mode = "v" })

local function update(self, info)
  self.id = info.id
  self.backend = info.backend
  self.template = info.template
  self.created_at = info.created_at
  self.labels = info.labels
  self.state = info.state
  self._info = info
end

local function wrap(info)
  local self = setmetatable({}, Sandbox)
  update(self, info)
  return self
end

Sandbox._update = update

--- Agent connections kept from reconnecting, and why: "dump" while a
-- snapshot or pause dumps the tree (no host connection may be open
-- then), "paused" while the sandbox is paused. Weak keys.
local held = setmetatable({}, { __mode = "k" })

--- Keep `agent` from reconnecting, for `reason` ("dump" or "paused").
-- Requests on it wait until it is released.
function Sandbox._hold_agent(agent, reason)
  if not held[agent] then
    agent:pause()
  end
  held[agent] = reason
end

--- Let a held agent connection reconnect.
function Sandbox._release_agent(agent)
  if held[agent] then
    held[agent] = nil
    agent:resume()
  end
end

--- This host's agent connection to the sandbox, or nil; never connects.
function Sandbox:_agent_connection()
  local agent = self._agent or agents[self._info.agent_socket or ""]
  if agent and agent:is_open() then
    return agent
  end
  return nil
end

--- This host's agent connection to the sandbox, made (not connected)
-- when there is none, or nil when the record has no agent socket.
function Sandbox:_open_agent()
  local agent = self:_agent_connection()
  local path = self._info.agent_socket
  if agent == nil and path ~= nil and path ~= "" then
    -- A VM's agent sits behind serial ports, one connection each: the
    -- client takes a free port by its lock and speaks with sync markers.
    agent = core.agent_open(path, self.backend == "vm")
    agents[path] = agent
  end
  self._agent = agent
  return agent
end

function Sandbox:__tostring()
  return ("sandlot.Sandbox (%s, %s)"):format(self.id, self.state)
end

--- Kill the sandbox when a to-be-closed variable with the object goes
-- out of scope (`local sb <close> = assert(Sandbox.create {})`). It
-- waits for the kill where the task can suspend. Where it cannot (a
-- failed or cancelled task closing its variables, or a pcall unwinding
-- an error) the kill runs on the threadpool without waiting. A sandbox
-- that has ended already is left alone, and a failed kill is logged.
function Sandbox:__close()
  if getmetatable(self) ~= Sandbox or self.state == "dead" then
    return
  end
  if not core.can_suspend() then
    core.sandbox_kill_detached(self.id)
    self.state = "dead"
    self._info.state = "dead"
    return
  end
  local ok, message, name = self:kill()
  if not ok and name ~= "ESRCH" then
    core.log("warn", "sandbox.close_failed", ("sandbox=%s error=%q"):format(self.id, message))
  end
end

--- The fail tuple of a call on a sandbox that has ended.
function Sandbox:_ended()
  local reason = self._info.end_reason or "dead"
  return fail("ESRCH", "sandbox has ended (%s): %s", reason, self.id)
end

--- Close the agent connection of an ended sandbox, so that its process
-- handles fail with ESRCH at once instead of trying to reconnect.
local function close_agent(self)
  local path = self._info.agent_socket
  local agent = self._agent or (path and agents[path])
  if agent and agent:is_open() then
    local _, message = self:_ended()
    agent:shutdown("ESRCH", (message:gsub("^ESRCH: ", "")))
  end
  self._agent = nil
end

--- Turn a failure into ESRCH when the connection failed because the
-- sandbox ended (killed by another process, its PID 1 died, timed out),
-- and into EBUSY when it failed because the sandbox was paused (by
-- another process or its timeout).
function Sandbox:_failed(message, name, kind)
  if kind == "connection" then
    local info = core.sandbox_get(self.id)
    if info then
      update(self, info)
    end
    if self.state == "dead" then
      close_agent(self)
      return self:_ended()
    elseif self.state == "paused" then
      return fail("EBUSY", "sandbox is paused (resume it first): %s", self.id)
    end
  end
  return nil, message, name
end

--- States in which no agent replies: none runs yet, none runs while the
-- sandbox is dumped to disk, or its processes are stopped.
local unreachable = { creating = true, paused = true, frozen = true }

--- Whether the freezer of a process sandbox is frozen now, read from its
-- cgroup. It is also frozen for a moment during a snapshot, when the
-- record still says "running", unlike after sb:freeze.
local function freezer_frozen(self)
  return self.backend == "process" and self._info.cgroups ~= nil
    and core.cgroups_frozen(self._info.cgroups)
end

--- `true` when the agent can reply to a request now, else the fail
-- tuple: ESRCH once the sandbox has ended, EBUSY while it is frozen,
-- paused or being created. A paused sandbox stays so until sb:resume()
-- or Sandbox.connect(id) resumes it, in this or another sandlot process.
-- When the record shows it running again, `agent` (default: this host's
-- connection to the sandbox), held since the pause, may reconnect.
-- Suspends when the record must be read again.
function Sandbox:_check_reachable(fname, agent)
  core.async_check(fname)
  agent = agent or self:_agent_connection()
  -- Another object of this host may have paused it.
  local held_paused = agent ~= nil and held[agent] == "paused"
  if unreachable[self.state] or held_paused or freezer_frozen(self) then
    local info = core.sandbox_get(self.id)
    if info then
      update(self, info)
    end
  end
  if self.state == "dead" then
    return self:_ended()
  elseif self.state == "paused" then
    return fail("EBUSY", "sandbox is paused (resume it first): %s", self.id)
  elseif unreachable[self.state] then
    return fail("EBUSY", "sandbox is %s: %s", self.state, self.id)
  end
  if held_paused then
    Sandbox._release_agent(agent)
  end
  return true
end

--- The agent connection, connected; or the fail tuple. A frozen or
-- paused sandbox fails at once with EBUSY, because its agent cannot
-- reply and a request sent now would wait for the thaw or resume.
-- Suspends.
function Sandbox:_connect(fname)
  local ok, message, name = self:_check_reachable(fname)
  if not ok then
    return nil, message, name
  end
  local agent = self:_open_agent()
  if agent == nil then
    return fail("EIO", "sandbox has no agent socket in its record: %s", self.id)
  end
  local kind
  ok, message, name, kind = agent:connect()
  if not ok then
    return self:_failed(message, name, kind)
  end
  return agent
end

--- Requests that may be sent again when the connection dropped before
-- their reply, because they change nothing.
local repeatable = {
  hello = true, ping = true, list = true, file_read = true, list_dir = true, stat = true,
}

--- Send one agent request; returns the reply fields or the fail tuple.
-- A repeatable request is sent once more after a lost connection.
function Sandbox:_call(fname, request, fields)
  local agent, message, name = self:_connect(fname)
  if not agent then
    return nil, message, name
  end
  local reply, kind
  reply, message, name, kind = agent:call(request, fields)
  if not reply and kind == "connection" and repeatable[request] then
    agent, message, name = self:_connect(fname)
    if not agent then
      return nil, message, name
    end
    reply, message, name, kind = agent:call(request, fields)
  end
  if not reply then
    return self:_failed(message, name, kind)
  end
  return reply
end

-- ---- Creating and finding sandboxes ----

local create_options = {
  template = "string", backend = "string", timeout = "number", on_timeout = "string",
  memory = { "string", "number" }, pids = "number", cpu_shares = "number", cpus = "number",
  env = "table", cwd = "string", hostname = "string", labels = "table", auto_kill = "boolean",
  on_progress = "function", snapshot = { "string", "table" }, on_fork = "string",
}

--- Template progress callbacks of the creates that run now.
local progress_callbacks = {}

local function on_template_progress(line)
  for callback in pairs(progress_callbacks) do
    local ok, err = xpcall(callback, debug.traceback, line)
    if not ok then
      io.stderr:write("sandlot: on_progress callback failed: ", tostring(err), "\n")
    end
  end
end

--- A sorted list of "key=value" from a table. Raises on wrong types and
-- returns the EINVAL fail tuple for a key with "=" or a NUL byte.
local function pairs_to_list(fname, what, noun, map)
  local list = {}
  for key, value in pairs(map) do
    if type(key) ~= "string" then
      check.raise(("%s: %s keys must be strings, got %s"):format(fname, what, type(key)))
    end
    if type(value) ~= "string" and type(value) ~= "number" then
      check.raise(("%s: %s.%s must be a string or number, got %s"):format(fname, what, key,
        type(value)))
    end
    local _, message, name = check.pair_name(noun .. " name", key)
    if not message then
      _, message, name = check.text(("value of %s %s"):format(noun, key), tostring(value))
    end
    if message then
      return nil, message, name
    end
    list[#list + 1] = key .. "=" .. tostring(value)
  end
  table.sort(list)
  return list
end

--- Format a number for a message; a whole float gets no exponent.
local function number_text(value)
  if math.type(value) == "float" and value == math.floor(value) and math.abs(value) < 1e21 then
    return ("%.0f"):format(value)
  end
  return tostring(value)
end

--- Convert `value` to an integer; nil and the reason when it has no
-- exact integer value.
local function to_integer(value)
  local integer = math.tointeger(value)
  if integer then
    return integer
  elseif value ~= value or value ~= math.floor(value) then
    return nil, "expected a whole number"
  end
  return nil, value > 0 and "too large" or "too small"
end

--- The timeout in whole seconds, or the EINVAL fail tuple. The range is
-- the core's (SL_TIMEOUT_MAX_SEC, about 100 years), the same for create,
-- set_timeout and the monitor.
local function timeout_seconds(value)
  local seconds = math.tointeger(value)
  if seconds == nil or seconds < 0 or seconds > core.timeout_max then
    return fail("EINVAL", "invalid timeout: %s (expected whole seconds from 0 to %d)",
      number_text(value), core.timeout_max)
  end
  return seconds
end

--- The create options that are whole numbers in a range. The core takes
-- 0 for "the default" as well; here 0 is out of range.
local whole_limits = {
  { key = "pids", what = "pids limit", min = 1, max = core.pids_max },
  { key = "cpu_shares", what = "cpu_shares", min = 2, max = core.cpu_shares_max },
}

--- Check and normalize create options: types raise, values fail.
local function create_spec(fname, options)
  check.options(fname, options, create_options)
  local spec = {}
  for key, value in pairs(options) do
    spec[key] = value
  end
  if options.timeout ~= nil then
    local seconds, message, name = timeout_seconds(options.timeout)
    if not seconds then
      return nil, message, name
    end
    spec.timeout = seconds
  end
  for _, limit in ipairs(whole_limits) do
    local value = options[limit.key]
    if value ~= nil then
      local integer = math.tointeger(value)
      if integer == nil or integer < limit.min or integer > limit.max then
        return fail("EINVAL", "invalid %s: %s (expected a whole number from %d to %d)", limit.what,
          number_text(value), limit.min, limit.max)
      end
      spec[limit.key] = integer
    end
  end
  if type(options.memory) == "number" then
    local bytes, why = to_integer(options.memory)
    if why == "too large" then
      why = ("too large: at most %d bytes"):format(math.maxinteger)
    elseif not bytes or bytes <= 0 then
      why = 'expected whole bytes > 0, or a size such as "512M"'
    end
    if not bytes or bytes <= 0 then
      return fail("EINVAL", "invalid memory limit: %s (%s)", number_text(options.memory), why)
    end
    spec.memory = tostring(bytes)
  end
  local cpus = options.cpus
  if cpus ~= nil and (not (cpus >= 0 and cpus <= 1024) or (cpus > 0 and cpus < 0.01)) then
    return fail("EINVAL", "invalid cpus: %s (expected 0.01 to 1024, or 0 for no quota)",
      number_text(cpus))
  end
  if type(options.snapshot) == "table" then
    if type(options.snapshot.id) ~= "string" then
      check.raise(fname .. ": option snapshot must be a snapshot object, id or reference")
    end
    spec.snapshot = options.snapshot.id
  end
  for _, key in ipairs { "template", "backend", "on_timeout", "memory", "cwd", "hostname",
    "snapshot", "on_fork" } do
    if type(spec[key]) == "string" then
      local _, message, name = check.text(key, spec[key])
      if message then
        return nil, message, name
      end
    end
  end
  for key, noun in pairs { env = "environment variable", labels = "label" } do
    if options[key] then
      local list, message, name = pairs_to_list(fname, key, noun, options[key])
      if not list then
        return nil, message, name
      end
      spec[key] = list
    end
  end
  spec.on_progress = nil
  return spec
end

--- Create one sandbox, or `count` in parallel (a list of objects).
--- The EINVAL fail tuple when `backend` is given and differs from the
-- backend of the snapshot `ref`, or nil. The core cannot tell "process"
-- from no backend (both are 0 in sl_create_spec), so this check is here.
-- Suspends.
local function check_fork_backend(backend, ref)
  local record = core.snapshot_get(ref)
  if record == nil or record.backend == backend then
    return nil -- an unknown snapshot fails in the create
  end
  return fail("EINVAL", "create sandbox: invalid backend: %s (snapshot %s is a %s snapshot, and a "
    .. "sandbox made from a snapshot runs on the snapshot's backend)", backend, record.id,
    record.backend)
end

local function create(fname, options, count)
  core.async_check(fname)
  local spec, message, name = create_spec(fname, options)
  if not spec then
    return nil, message, name
  end
  if spec.backend ~= nil and spec.snapshot ~= nil then
    local _
    _, message, name = check_fork_backend(spec.backend, spec.snapshot)
    if message then
      return nil, message, name
    end
  end
  local callback = options.on_progress
  if callback then
    progress_callbacks[callback] = true
    core.on_template_progress(on_template_progress)
  end
  local info
  info, message, name = core.sandbox_create(spec, count)
  if callback then
    progress_callbacks[callback] = nil
    if next(progress_callbacks) == nil then
      core.on_template_progress(nil)
    end
  end
  if not info then
    return nil, message, name
  end
  if count == nil then
    return wrap(info)
  end
  local list = {}
  for i, one in ipairs(info) do
    list[i] = wrap(one)
  end
  return list
end

--- Sandbox.create{...}: create a sandbox and wait until its agent accepts
-- requests. Options (all optional): template ("base"), backend
-- ("process"), timeout (seconds from now, 0 none), on_timeout ("kill",
-- "pause" or "pause_fs"), memory ("512M" or bytes, 16M to 2^63-1, default
-- 1G; a limit above the host's memory limits nothing), pids (1 to
-- 4194304, default 1024), cpu_shares (2 to 262144), cpus (0.01 to 1024;
-- 0, the default, sets no quota), env (table NAME = value), cwd ("/"),
-- hostname ("sandlot"), labels (table key = value), auto_kill (kill it
-- when this sandlot process exits), on_progress (function(line) for
-- template build output, called on the loop outside any task, so it
-- cannot suspend; without it the lines go to stderr). Values of env and
-- labels are strings; a number is stored as tostring() writes it.
--
-- snapshot (a snapshot object, id, "name:tag" or "name") starts from a
-- snapshot instead of the template. A full snapshot is forked: its
-- processes continue from the snapshot's memory in a new sandbox with its
-- own id, hostname (default: the id), cgroups and network namespace. A
-- filesystem-only one boots a fresh agent on its files. A fork keeps the
-- environment and working directory of the snapshot's agent, so env and
-- cwd are EINVAL with a full snapshot (pass them to exec instead). A
-- backend or template other than the snapshot's is EINVAL too. The
-- limits, timeout, on_timeout, hostname, labels and auto_kill apply to a
-- fork as to any sandbox, and a limit not given is the one of the
-- sandbox the snapshot was taken of (while its record exists). on_fork is a command run by /bin/sh -c in a
-- fork before create returns; a non-zero exit fails the create.
-- on_timeout "pause" dumps memory and files to disk (state paused),
-- "pause_fs" keeps the files only. Suspends.
function Sandbox.create(options)
  options = options or {}
  check.arg("Sandbox.create", 1, options, "table")
  return create("Sandbox.create", options, nil)
end

--- Sandbox.create_many{count = N, ...}: N sandboxes from the options of
-- Sandbox.create (typically forks of one snapshot), created in parallel;
-- returns the list of objects. All or nothing: when one fails, the others
-- are killed and the first error is returned. count is 1 to 64.
-- Suspends.
function Sandbox.create_many(options)
  check.arg("Sandbox.create_many", 1, options, "table")
  local count = options.count
  if type(count) ~= "number" then
    check.raise(("Sandbox.create_many: option count must be a number, got %s"):format(type(count)))
  end
  local integer = to_integer(count)
  if not integer or integer < 1 or integer > 64 then
    return fail("EINVAL", "invalid count: %s (expected 1 to 64)", number_text(count))
  end
  local copy = {}
  for key, value in pairs(options) do
    copy[key] = value
  end
  copy.count = nil
  return create("Sandbox.create_many", copy, integer)
end

--- Sandbox.get(id): the sandbox with this id, from the catalog that every
-- sandlot process using this store shares; ENOENT for an unknown id.
-- Suspends.
function Sandbox.get(id)
  check.arg("Sandbox.get", 1, id, "string")
  local _, bad_id, bad_name = check.text("sandbox id", id)
  if bad_id then
    return nil, bad_id, bad_name
  end
  local info, message, name = core.sandbox_get(id)
  if not info then
    return nil, message, name
  end
  return wrap(info)
end

local list_options = { state = "string", label = { "string", "table" }, backend = "string" }

--- The values the state and backend filters of Sandbox.list accept, in
-- the order of the catalog's enumerations.
local sandbox_states = { "creating", "running", "frozen", "paused", "dead" }
local backends = { "process", "vm" }

local function has_labels(info, wanted)
  for key, value in pairs(wanted) do
    if info.labels[key] ~= tostring(value) then
      return false
    end
  end
  return true
end

local function label_filter(label)
  if type(label) == "table" then
    return label
  end
  local key, value = label:match "^([^=]+)=(.*)$"
  if key == nil then
    return nil
  end
  return { [key] = value }
end

--- Sandbox.list{state=, label=, backend=}: sandboxes of the store, oldest
-- first, dead ones included unless a state is given. label is "key=value"
-- or a table of labels that must all match. A state or backend that does
-- not exist is EINVAL, naming the valid ones. Suspends.
local function list_sandboxes(filter)
  filter = filter or {}
  check.arg("Sandbox.list", 1, filter, "table")
  check.options("Sandbox.list", filter, list_options)
  local labels = filter.label and label_filter(filter.label)
  if filter.label and labels == nil then
    return fail("EINVAL", "invalid label filter: %q (expected key=value)", filter.label)
  end
  local _, message, name
  if filter.state ~= nil then
    _, message, name = check.one_of("state", filter.state, sandbox_states)
  end
  if message == nil and filter.backend ~= nil then
    _, message, name = check.one_of("backend", filter.backend, backends)
  end
  if message then
    return nil, message, name
  end
  local infos
  infos, message, name = core.sandbox_list()
  if not infos then
    return nil, message, name
  end
  local result = {}
  for _, info in ipairs(infos) do
    local keep = (filter.state == nil or info.state == filter.state)
      and (filter.backend == nil or info.backend == filter.backend)
      and (labels == nil or has_labels(info, labels))
    if keep then
      result[#result + 1] = wrap(info)
    end
  end
  return result
end

Sandbox._list_sandboxes = list_sandboxes

--- Sandbox.connect(id): the sandbox with this id, ready for requests: a
-- paused sandbox is resumed first (the same id and state). ENOENT for an
-- unknown id, ESRCH for one that has ended. Suspends.
function Sandbox.connect(id)
  check.arg("Sandbox.connect", 1, id, "string")
  local _, bad_id, bad_name = check.text("sandbox id", id)
  if bad_id then
    return nil, bad_id, bad_name
  end
  local info, message, name = core.sandbox_connect(id)
  if not info then
    return nil, message, name
  end
  local sandbox = wrap(info)
  -- Process handles of this host that waited through the pause re-attach.
  local agent = sandbox:_agent_connection()
  if agent then
    Sandbox._release_agent(agent)
  end
  return sandbox
end

-- ---- State ----

--- Read the sandbox's record again and update the fields. Returns the
-- object. Suspends.
function Sandbox:refresh()
  check.self("sandbox:refresh", self, Sandbox)
  local info, message, name = core.sandbox_get(self.id)
  if not info then
    return nil, message, name
  end
  update(self, info)
  return self
end

--- The sandbox's full record, read again: state, limits, pids, cgroups,
-- paths, exit status and end reason. Suspends.
function Sandbox:info()
  check.self("sandbox:info", self, Sandbox)
  local ok, message, name = self:refresh()
  if not ok then
    return nil, message, name
  end
  local copy = {}
  for key, value in pairs(self._info) do
    copy[key] = value
  end
  return copy
end

--- Kill every process of the sandbox and release its mounts and cgroups.
-- Suspends until that is done.
function Sandbox:kill()
  check.self("sandbox:kill", self, Sandbox)
  local ok, message, name = core.sandbox_kill(self.id)
  if not ok then
    if name == "ESRCH" then
      self.state = "dead"
    end
    return nil, message, name
  end
  self.state = "dead"
  self._info.state = "dead"
  self._info.end_reason = self._info.end_reason or "killed"
  close_agent(self)
  return true
end

--- Delete the record and the folder (logs, end reason) of a sandbox that
-- has ended. Sandbox.list and Sandbox.get no longer return it, and its
-- snapshots stay. EBUSY while it is alive. Suspends.
function Sandbox:delete()
  check.self("sandbox:delete", self, Sandbox)
  local ok, message, name = core.sandbox_remove(self.id)
  if not ok then
    return nil, message, name
  end
  close_agent(self)
  return true
end

local function state_call(self, fname, call, new_state)
  check.self(fname, self, Sandbox)
  local ok, message, name = call(self.id)
  if not ok then
    if name == "ESRCH" then
      self.state = "dead"
    end
    return nil, message, name
  end
  self.state = new_state
  self._info.state = new_state
  return true
end

--- Stop every process of the sandbox (freezer cgroup); memory stays.
-- Agent calls on it fail with EBUSY until sb:thaw(). Suspends.
function Sandbox:freeze()
  return state_call(self, "sandbox:freeze", core.sandbox_freeze, "frozen")
end

--- Resume a frozen sandbox. Suspends.
function Sandbox:thaw()
  return state_call(self, "sandbox:thaw", core.sandbox_thaw, "running")
end

--- Kill the sandbox `seconds` from now (or apply its on_timeout action);
-- 0 removes the timeout. Suspends.
function Sandbox:set_timeout(seconds, ...)
  check.self("sandbox:set_timeout", self, Sandbox)
  check.arg("sandbox:set_timeout", 1, seconds, "number")
  if select("#", ...) > 0 then
    -- on_timeout is fixed at create; a dropped second argument would
    -- leave the sandbox to be killed where the caller expected a pause.
    check.raise("sandbox:set_timeout: takes one argument (seconds); on_timeout is set by Sandbox.create")
  end
  local whole, message, name = timeout_seconds(seconds)
  if not whole then
    return nil, message, name
  end
  local ok
  ok, message, name = core.sandbox_set_timeout(self.id, whole)
  if not ok then
    return nil, message, name
  end
  return true
end

return Sandbox
