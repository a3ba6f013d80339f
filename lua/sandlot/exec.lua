--- Commands and processes in sandboxes: sandbox:exec, sandbox:spawn,
-- sandbox:processes, sandbox:process, and the methods of process handles
-- written in Lua (the others are in lua/lprocess.c).
local core = require "sandlot.core"
local check = require "sandlot.check"
local Sandbox = require "sandlot.sandbox"

local fail = check.fail
local Process = core.process_methods

local spawn_options = {
  timeout = "number", env = "table", cwd = "string", stdin = "string",
  on_stdout = "function", on_stderr = "function",
}

local exec_options = { max_output = "number", capture = "boolean" }
for key, expected in pairs(spawn_options) do
  exec_options[key] = expected
end

--- Bytes of each stream that sandbox:exec keeps for its result when
-- max_output is not given: 16 MiB.
local MAX_OUTPUT = 16 * 1024 * 1024

--- Seconds that sandbox:exec waits for the exit after its timeout, for
-- the agent's kill to arrive, before it gives up with ETIMEDOUT.
local EXEC_GRACE = 3

--- The maximum exec timeout in seconds, about 31 years.
local EXEC_TIMEOUT_MAX = 1000000000

--- The fail tuple when the command, an argument or the cwd has a NUL
-- byte, which a C string cannot carry.
local function check_texts(spec, merged)
  local texts = { { "command", spec.command }, { "cwd", merged.cwd } }
  for i, word in ipairs(spec.argv or {}) do
    texts[#texts + 1] = { ("argv[%d]"):format(i), word }
  end
  for _, text in ipairs(texts) do
    local _, message, name = check.text(text[1], text[2] or "")
    if message then
      return nil, message, name
    end
  end
end

--- Build the agent's exec spec from a command (a string for /bin/sh -c,
-- or a list: program and arguments, which may also carry the options as
-- named fields) and an options table. Returns the spec and the options,
-- or the fail tuple for a bad value.
local function exec_spec(fname, command, options, allowed)
  check.arg(fname, 1, command, { "string", "table" })
  if options ~= nil then
    check.arg(fname, 2, options, "table")
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
        check.raise(("%s: argv[%d] must be a string, got %s"):format(fname, i, type(word)))
      end
      spec.argv[i] = word
    end
    if #spec.argv == 0 then
      check.raise(("%s: the command list is empty (expected a program and its arguments)"):format(fname))
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
  check.options(fname, merged, allowed)
  local _, message, name = check_texts(spec, merged)
  if message then
    return nil, message, name
  end
  if merged.timeout ~= nil then
    -- Written so that NaN fails too.
    if not (merged.timeout > 0 and merged.timeout <= EXEC_TIMEOUT_MAX) then
      return fail("EINVAL", "invalid timeout: %s (expected seconds > 0, at most %d)",
        tostring(merged.timeout), EXEC_TIMEOUT_MAX)
    end
    spec.timeout_ms = math.ceil(merged.timeout * 1000)
  end
  if merged.env then
    spec.env = {}
    for key, value in pairs(merged.env) do
      if type(key) ~= "string" or (type(value) ~= "string" and type(value) ~= "number") then
        check.raise(("%s: env must map names to strings or numbers"):format(fname))
      end
      _, message, name = check.pair_name("environment variable name", key)
      if not message then
        _, message, name = check.text("value of environment variable " .. key, tostring(value))
      end
      if message then
        return nil, message, name
      end
      spec.env[#spec.env + 1] = key .. "=" .. tostring(value)
    end
    table.sort(spec.env)
  end
  spec.cwd = merged.cwd
  spec.stdin = merged.stdin
  return spec, merged
end

--- Add to an exec spec what the result keeps: max_output per stream,
-- streams without a callback (or all with capture = true), and the
-- host-side deadline after the timeout. Returns the EINVAL fail tuple for
-- a bad max_output.
local function capture_spec(spec, merged)
  local max = merged.max_output or MAX_OUTPUT
  if max == math.huge then
    spec.max_output = 0
  elseif math.tointeger(max) and max > 0 then
    spec.max_output = math.tointeger(max)
  else
    return fail("EINVAL", "invalid max_output: %s (expected bytes > 0, or math.huge for no limit)",
      tostring(max))
  end
  spec.chunk_stdout = merged.on_stdout ~= nil
  spec.chunk_stderr = merged.on_stderr ~= nil
  spec.keep_stdout = merged.capture == true or merged.on_stdout == nil
  spec.keep_stderr = merged.capture == true or merged.on_stderr == nil
  if merged.timeout then
    spec.deadline = merged.timeout + EXEC_GRACE
  end
  return true
end

--- Bytes of stdin sent in one request to the agent: with its other
-- fields, a request must fit the protocol's maximum of 4 MiB.
local STDIN_CHUNK = core.agent_chunk_size

--- Start a task that writes the rest of a process's stdin; defined with
-- the process handles below.
local start_stdin_writer

--- Keep the first STDIN_CHUNK bytes of the spec's stdin for the start
-- request and return the rest, or nil when all of it fits. With a rest,
-- the start leaves stdin open for it.
local function split_stdin(spec)
  if spec.stdin == nil or #spec.stdin <= STDIN_CHUNK then
    return nil
  end
  local rest = spec.stdin:sub(STDIN_CHUNK + 1)
  spec.stdin = spec.stdin:sub(1, STDIN_CHUNK)
  spec.stdin_open = true
  return rest
end

--- A to-be-closed value that cancels `task` (if any) when it goes out of
-- scope; cancelling a task that has ended does nothing.
local function cancel_on_close(task)
  return setmetatable({}, {
    __close = function()
      if task then
        task:cancel()
      end
    end,
  })
end

--- The fail tuple of a stdin writer that ended without success, or nil
-- while it runs or after it wrote everything.
local function writer_failure(writer)
  if writer == nil or (writer.status ~= "done" and writer.status ~= "failed") then
    return nil
  end
  local ok, message, name = writer:wait()
  if ok then
    return nil
  end
  return message, name
end

--- Run a command and wait for it to end.
--
-- `command` is a string, run by /bin/sh -c, or a list {program, args...},
-- run directly (PATH is searched). Options, in `options` or as named
-- fields of the list: timeout (seconds; the agent kills the process
-- group when it expires, and without an exit EXEC_GRACE seconds later the
-- call fails with ETIMEDOUT), env (table NAME = value, added to the
-- sandbox's), cwd, stdin (bytes of any length, written while the output
-- is read; a process that exits before it read them all is no failure),
-- on_stdout and on_stderr
-- (function(chunk), called in this task as output arrives, in order; they
-- may suspend, and one that raises fails this task after the process is
-- killed), max_output (bytes kept of each stream, default MAX_OUTPUT,
-- math.huge for all), capture (also keep the streams that have a
-- callback; by default only the others are kept).
--
-- Returns {exit_code, signal, stdout, stderr, stdout_truncated,
-- stderr_truncated, timed_out, duration, id, pid}. stdout and stderr are
-- the first max_output bytes (nil for a stream passed to a callback
-- without capture), and a truncated flag is true when more was dropped. A
-- process killed by signal N has exit_code 128 + N and signal N. A
-- non-zero exit is a result; a program that does not exist returns
-- nil, "ENOENT: program not found: NAME", "ENOENT". Suspends.
function Sandbox:exec(command, options)
  check.self("sandbox:exec", self, Sandbox)
  local spec, merged, name = exec_spec("sandbox:exec", command, options, exec_options)
  if not spec then
    return nil, merged, name
  end
  local _, message
  _, message, name = capture_spec(spec, merged)
  if message then
    return nil, message, name
  end
  local stdin_rest = split_stdin(spec)
  local agent
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
  -- The rest of stdin goes in from another task, so that this one reads
  -- the output meanwhile: a process that writes as it reads would
  -- otherwise stop on a full output buffer.
  local writer = stdin_rest and start_stdin_writer(handle, stdin_rest, { close = true })
  local _ <close> = cancel_on_close(writer)
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
  message, name = writer_failure(writer)
  if message then
    return nil, message, name
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
-- handle. Takes the command and options of sandbox:exec. stdin is
-- written before what process:write sends, by a task of its own when it
-- is larger than STDIN_CHUNK. With on_stdout or on_stderr, that output
-- goes to the callback instead of the read methods; callbacks run in
-- order, as a task while output waits. Suspends until the process runs.
function Sandbox:spawn(command, options)
  check.self("sandbox:spawn", self, Sandbox)
  local spec, merged, name = exec_spec("sandbox:spawn", command, options, spawn_options)
  if not spec then
    return nil, merged, name
  end
  spec.stdin_open = true
  local stdin_rest = split_stdin(spec)
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
  owners[process] = self
  if stdin_rest then
    start_stdin_writer(process, stdin_rest, { log = true })
  end
  if merged.on_stdout or merged.on_stderr then
    callbacks[process] = { merged.on_stdout, merged.on_stderr }
    set_callbacks(process, merged.on_stdout, merged.on_stderr)
  end
  handles[handle_key(self, process.id)] = process
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
  check.arg("sandbox:process", 1, id, "number")
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

--- The fail tuple of a failed handle, the one its reads return: ECANCELED
-- after a rollback, ESRCH once its sandbox ended. nil for a handle that
-- has not failed.
local function failure(self)
  if self.state == "failed" then
    return forward(owners[self], self:_failure())
  end
end

--- Raise unless the handle is open (the message of liolib's closed files).
local function check_open(self)
  if self.state == "closed" then
    check.raise("attempt to use a closed process handle")
  end
end

local function process_call(self, fname, request, fields)
  check_open(self)
  local agent = self:_agent()
  core.async_check(fname)
  local owner = owners[self]
  if owner then
    local ok, message, name = owner:_check_reachable(fname, agent)
    if not ok then
      return nil, message, name
    end
  end
  local reply, message, name, kind = agent:call(request, fields)
  if not reply then
    return forward(owner, nil, message, name, kind)
  end
  return true
end

--- Writers of each handle's stdin that wait for their turn: handle ->
-- list of functions that wake them. A handle is absent while no task
-- writes to it. Weak keys.
local stdin_turns = setmetatable({}, { __mode = "k" })

--- Wait until no other task writes to the stdin of `process`, then make
-- the calling task its writer, so that chunks of two writes never mix.
-- Returns a to-be-closed value that ends the turn and wakes the waiting
-- tasks, also when the writer fails or is cancelled. Suspends while
-- another task writes.
local function take_stdin_turn(process)
  while stdin_turns[process] do
    local waiting = stdin_turns[process]
    core.await(function(wake)
      waiting[#waiting + 1] = wake
    end)
  end
  local waiting = {}
  stdin_turns[process] = waiting
  return setmetatable({}, {
    __close = function()
      if stdin_turns[process] == waiting then
        stdin_turns[process] = nil
      end
      for _, wake in ipairs(waiting) do
        wake()
      end
    end,
  })
end

--- Write `data` to the stdin of `process` in requests of at most
-- STDIN_CHUNK bytes, in order, while holding the stdin turn. Returns
-- true or the fail tuple of the first request that failed.
local function write_chunks(process, data)
  local first = 1
  repeat
    local chunk = data:sub(first, first + STDIN_CHUNK - 1)
    local ok, message, name = process_call(process, "process:write", "write_stdin",
      { proc = process.id, data = chunk })
    if not ok then
      return nil, message, name
    end
    first = first + STDIN_CHUNK
  until first > #data
  return true
end

--- Start a task that writes `data` to the stdin of the new process
-- `process` ahead of any process:write, and with options.close closes
-- stdin after it. A process that stops reading (EPIPE) is no failure, as
-- with a shell pipe. On another failure the task kills the process,
-- which would otherwise wait for the rest, logs the failure with
-- options.log, and returns its fail tuple.
-- NOTE: for a spawned process that neither reads its stdin nor exits,
-- the task waits, and like any waiting task keeps the host running.
function start_stdin_writer(process, data, options)
  -- Taken now, before the task first runs, so that no write comes first.
  local turn = take_stdin_turn(process)
  return core.spawn(function()
    local _ <close> = turn
    local ok, message, name = write_chunks(process, data)
    if ok and options.close then
      ok, message, name = process_call(process, "process:close_stdin", "close_stdin",
        { proc = process.id })
    end
    if ok or name == "EPIPE" then
      return true
    end
    if process.state ~= "closed" then
      process:kill()
    end
    if options.log then
      core.log("warn", "process.stdin_failed", ("proc=%s pid=%s error=%q"):format(process.id,
        process.pid, message))
    end
    return nil, message, name
  end)
end

--- Write bytes to the process's stdin, any amount; returns once the agent
-- wrote them to the pipe. Data over STDIN_CHUNK bytes goes in several
-- requests, and writes of other tasks to this process wait meanwhile.
-- EPIPE after close_stdin or the exit; a handle from before a rollback
-- fails with ECANCELED, as its reads do. Suspends.
function Process:write(data)
  check.arg("process:write", 1, data, "string")
  check_open(self)
  if self.state == "failed" then
    return failure(self)
  elseif self.state == "exited" then
    return fail("EPIPE", "process %d has ended: stdin is closed", self.id)
  end
  local _ <close> = take_stdin_turn(self)
  return write_chunks(self, data)
end

--- Close the process's stdin once what was written reached it. Suspends.
function Process:close_stdin()
  check_open(self)
  if self.state == "failed" then
    return failure(self)
  elseif self.state == "exited" then
    return true
  end
  local _ <close> = take_stdin_turn(self)
  return process_call(self, "process:close_stdin", "close_stdin", { proc = self.id })
end

local signals = {
  HUP = 1, INT = 2, QUIT = 3, KILL = 9, USR1 = 10, USR2 = 12, PIPE = 13, ALRM = 14, TERM = 15,
  CONT = 18, STOP = 19,
}

--- Send a signal (a number, or a name such as "TERM" or "SIGTERM";
-- default KILL) to the process group of the process. ESRCH once it has
-- exited; ECANCELED for a handle from before a rollback. Suspends.
function Process:kill(signal)
  local number = signal or 9
  if type(signal) == "string" then
    number = signals[signal:upper():gsub("^SIG", "")]
    if number == nil then
      return fail("EINVAL", "unknown signal name: %s (expected a name such as \"TERM\" or a number)",
        check.subject(signal))
    end
  elseif signal ~= nil then
    check.arg("process:kill", 1, signal, { "number", "string" })
    number = math.tointeger(signal)
    if number == nil or number < 1 or number > 64 then
      return fail("EINVAL", "invalid signal number: %s (expected 1 to 64, or a name such as \"TERM\")",
        tostring(signal))
    end
  end
  check_open(self)
  if self.state == "failed" then
    return failure(self)
  elseif self.state == "exited" then
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
  check_open(self)
  check.arg(fname, 1, callback, "function")
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
