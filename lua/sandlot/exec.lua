--- Commands and processes in sandboxes: sandbox:exec, sandbox:spawn,
-- sandbox:processes, sandbox:process, and the methods of process handles
-- written in Lua (the others are in lua/lprocess.c).
local core = require "sandlot.core"
local check = require "sandlot.check"
local Sandbox = require "sandlot.sandbox"

local fail = check.fail
local Process = core.process_methods

local exec_options = {
  timeout = "number", env = "table", cwd = "string", stdin = "string",
  on_stdout = "function", on_stderr = "function",
}

--- Build the agent's exec spec from a command (a string for /bin/sh -c,
-- or a list: program and arguments, which may also carry the options as
-- named fields) and an options table. Returns the spec and the options,
-- or the fail tuple for a bad value.
local function exec_spec(fname, command, options)
  check.arg(fname, 1, command, { "string", "table" }, 4)
  if options ~= nil then
    check.arg(fname, 2, options, "table", 4)
  end
  local merged = {}
  local spec = {}
  if type(command) == "string" then
    spec.command = command
    spec.name = command
  else
    spec.argv = {}
    for i, word in ipairs(command) do
      if type(word) ~= "string" then
        error(("%s: argv[%d] must be a string, got %s"):format(fname, i, type(word)), 4)
      end
      spec.argv[i] = word
    end
    if #spec.argv == 0 then
      error(("%s: the command list is empty (expected a program and its arguments)"):format(fname), 4)
    end
    spec.name = table.concat(spec.argv, " ")
    for key, value in pairs(command) do
      if type(key) == "string" then
        merged[key] = value
      end
    end
  end
  for key, value in pairs(options or {}) do
    merged[key] = value
  end
  check.options(fname, merged, exec_options, 4)
  if merged.timeout ~= nil then
    if merged.timeout <= 0 or merged.timeout > 1e9 then
      return fail("EINVAL", "invalid timeout: %s (expected seconds > 0)", tostring(merged.timeout))
    end
    spec.timeout_ms = math.ceil(merged.timeout * 1000)
  end
  if merged.env then
    spec.env = {}
    for key, value in pairs(merged.env) do
      if type(key) ~= "string" or (type(value) ~= "string" and type(value) ~= "number") then
        error(("%s: env must map names to strings"):format(fname), 4)
      end
      if key == "" or key:find("[=%z]") then
        return fail("EINVAL", "invalid environment variable name: %q", key)
      end
      spec.env[#spec.env + 1] = key .. "=" .. tostring(value)
    end
    table.sort(spec.env)
  end
  spec.cwd = merged.cwd
  spec.stdin = merged.stdin
  return spec, merged
end

--- Run a command and wait for it to end.
--
-- `command` is a string, run by /bin/sh -c, or a list {program, args...},
-- run directly (PATH is searched). Options, in `options` or as named
-- fields of the list: timeout (seconds; the process group is killed when
-- it expires), env (table NAME = value, added to the sandbox's), cwd,
-- stdin (bytes), on_stdout and on_stderr (function(chunk), called in this
-- task as output arrives, in order; they may suspend, and one that raises
-- fails this task after the process is killed).
--
-- Returns {exit_code, signal, stdout, stderr, timed_out, duration, id,
-- pid}. A process killed by signal N has exit_code 128 + N and signal N.
-- A non-zero exit is a result; a program that does not exist returns
-- nil, "ENOENT: program not found: NAME", "ENOENT". Suspends.
function Sandbox:exec(command, options)
  check.self("sandbox:exec", self, Sandbox)
  local spec, merged, name = exec_spec("sandbox:exec", command, options)
  if not spec then
    return nil, merged, name
  end
  local agent, message
  agent, message, name = self:_connect("sandbox:exec")
  if not agent then
    return nil, message, name
  end
  local process, kind
  process, message, name, kind = agent:start(spec, "capture")
  if not process then
    return self:_failed(message, name, kind)
  end
  local handle <close> = process
  local on_stdout, on_stderr = merged.on_stdout, merged.on_stderr
  if on_stdout or on_stderr then
    while true do
      local fd, chunk
      fd, chunk, name, kind = handle:_next_chunk()
      if fd == nil then
        if chunk ~= nil then
          return self:_failed(chunk, name, kind)
        end
        break
      end
      local callback = on_stderr
      if fd == 1 then
        callback = on_stdout
      end
      if callback then
        callback(chunk)
      end
    end
  end
  local result
  result, message, name, kind = handle:wait()
  if not result then
    return self:_failed(message, name, kind)
  end
  return result
end

-- ---- Process handles ----

--- Live process handles by agent socket and process id, so that
-- sandbox:process(id) returns the handle this host already has.
local handles = setmetatable({}, { __mode = "v" })

--- The sandbox object each handle came from, to tell a lost connection
-- from an ended sandbox.
local owners = setmetatable({}, { __mode = "k" })

--- Wrap the C read and wait methods: a failure of the connection becomes
-- ESRCH when the handle's sandbox has ended.
local function forward(owner, value, message, name, kind)
  if value ~= nil then
    return value
  elseif message == nil then
    return nil -- the end of the output
  elseif kind == "connection" and owner then
    return owner:_failed(message, name, kind)
  end
  return nil, message, name
end

for _, method in ipairs { "read", "read_line", "read_all", "wait" } do
  local read_or_wait = Process[method]
  Process[method] = function(self, ...)
    return forward(owners[self], read_or_wait(self, ...))
  end
end

--- Callbacks set on process handles: handle -> {stdout, stderr}.
local callbacks = setmetatable({}, { __mode = "k" })

local function handle_key(self, id)
  return self._info.agent_socket .. "#" .. tostring(id)
end

local function make_pump(process, on_stdout, on_stderr)
  return function()
    while process.state ~= "closed" do
      local fd, chunk = process:_take()
      if fd == nil then
        return
      end
      if fd == 1 then
        on_stdout(chunk)
      else
        on_stderr(chunk)
      end
    end
  end
end

local function set_callbacks(process, on_stdout, on_stderr)
  process:_set_pump(make_pump(process, on_stdout, on_stderr), on_stdout ~= nil, on_stderr ~= nil)
end

--- Start a process in the background with stdin open and return its
-- handle. Takes the command and options of sandbox:exec. With on_stdout
-- or on_stderr, that output goes to the callback instead of the read
-- methods; callbacks run in order, as a task while output waits.
-- Suspends until the process runs.
function Sandbox:spawn(command, options)
  check.self("sandbox:spawn", self, Sandbox)
  local spec, merged, name = exec_spec("sandbox:spawn", command, options)
  if not spec then
    return nil, merged, name
  end
  spec.stdin_open = true
  local agent, message
  agent, message, name = self:_connect("sandbox:spawn")
  if not agent then
    return nil, message, name
  end
  local process, kind
  process, message, name, kind = agent:start(spec, "stream")
  if not process then
    return self:_failed(message, name, kind)
  end
  if merged.on_stdout or merged.on_stderr then
    callbacks[process] = { merged.on_stdout, merged.on_stderr }
    set_callbacks(process, merged.on_stdout, merged.on_stderr)
  end
  handles[handle_key(self, process.id)] = process
  owners[process] = self
  return process
end

local function process_entry(event)
  local argv = event.argv or {}
  return {
    id = event.proc,
    pid = event.pid,
    argv = argv,
    command = table.concat(argv, " "),
    state = event.state,
    exit_code = event.exit_code,
    signal = event.signal,
    timed_out = event.timed_out == 1,
    started_at = event.start_time_ms and event.start_time_ms / 1000,
    stdout_offset = event.stdout_offset,
    stderr_offset = event.stderr_offset,
    stdout_start = event.stdout_start,
    stderr_start = event.stderr_start,
  }
end

--- The processes the sandbox's agent keeps, started by any client:
-- {id, pid, argv, command, state ("running" or "exited"), exit_code,
-- signal, timed_out, started_at}, in start order. Exited processes stay
-- until a client has received their exit. Suspends.
function Sandbox:processes()
  check.self("sandbox:processes", self, Sandbox)
  local reply, message, name = self:_call("sandbox:processes", "list")
  if not reply then
    return nil, message, name
  end
  local list = {}
  for _, event in ipairs(reply.events or {}) do
    list[#list + 1] = process_entry(event)
  end
  table.sort(list, function(a, b)
    return a.id < b.id
  end)
  return list
end

--- A handle for process `id` of sandbox:processes(): the one this host
-- has, or a new one that follows the process from the oldest output the
-- agent still keeps. ENOENT when the agent does not know the process.
-- Suspends.
function Sandbox:process(id)
  check.self("sandbox:process", self, Sandbox)
  check.arg("sandbox:process", 1, id, "number", 2)
  local existing = handles[handle_key(self, id)]
  if existing and existing.state ~= "closed" and existing.state ~= "failed" then
    return existing
  end
  local list, message, name = self:processes()
  if not list then
    return nil, message, name
  end
  for _, entry in ipairs(list) do
    if entry.id == id then
      local agent
      agent, message, name = self:_connect("sandbox:process")
      if not agent then
        return nil, message, name
      end
      local process = agent:attach(id, entry.pid, entry.stdout_start or 0, entry.stderr_start or 0,
        entry.command)
      handles[handle_key(self, id)] = process
      owners[process] = self
      return process
    end
  end
  return fail("ENOENT", "no such process: %s in %s", tostring(id), self.id)
end

--- The agent drops a process once this host received its exit, so the
-- handle itself replies to requests about an ended process.
local function ended(self)
  return self.state == "exited" or self.state == "failed"
end

local function process_call(self, fname, request, fields)
  local agent = self:_agent()
  core.async_check(fname)
  local reply, message, name = agent:call(request, fields)
  if not reply then
    return nil, message, name
  end
  return true
end

--- Write bytes to the process's stdin; returns once the agent wrote them
-- to the pipe. EPIPE after close_stdin. Suspends.
function Process:write(data)
  check.arg("process:write", 1, data, "string", 2)
  if ended(self) then
    return fail("EPIPE", "process %d has ended: stdin is closed", self.id)
  end
  return process_call(self, "process:write", "write_stdin", { proc = self.id, data = data })
end

--- Close the process's stdin once what was written reached it. Suspends.
function Process:close_stdin()
  if ended(self) then
    return true
  end
  return process_call(self, "process:close_stdin", "close_stdin", { proc = self.id })
end

local signals = {
  HUP = 1, INT = 2, QUIT = 3, KILL = 9, USR1 = 10, USR2 = 12, PIPE = 13, ALRM = 14, TERM = 15,
  CONT = 18, STOP = 19,
}

--- Send a signal (a number, or a name such as "TERM" or "SIGTERM";
-- default KILL) to the process group of the process. ESRCH once it has
-- exited. Suspends.
function Process:kill(signal)
  local number = signal or 9
  if type(signal) == "string" then
    number = signals[signal:upper():gsub("^SIG", "")]
    if number == nil then
      return fail("EINVAL", "unknown signal name: %s", signal)
    end
  elseif signal ~= nil then
    check.arg("process:kill", 1, signal, { "number", "string" }, 2)
  end
  if ended(self) then
    return fail("ESRCH", "process %d has exited", self.id)
  end
  return process_call(self, "process:kill", "signal", { proc = self.id, signal = number })
end

--- An iterator over the lines of stdout (or of `stream`, "stderr"),
-- without their newlines; raises when the connection fails.
function Process:lines(stream)
  return function()
    local line, message = self:read_line(stream)
    if line == nil and message ~= nil then
      error(message, 2)
    end
    return line
  end
end

local function set_callback(self, fname, fd, callback)
  check.arg(fname, 1, callback, "function", 3)
  local set = callbacks[self] or {}
  callbacks[self] = set
  set[fd] = callback
  set_callbacks(self, set[1], set[2])
end

--- Send stdout to `callback(chunk)` from now on, instead of the read
-- methods (see sandbox:spawn).
function Process:on_stdout(callback)
  set_callback(self, "process:on_stdout", 1, callback)
end

--- Send stderr to `callback(chunk)` from now on.
function Process:on_stderr(callback)
  set_callback(self, "process:on_stderr", 2, callback)
end

return Sandbox
