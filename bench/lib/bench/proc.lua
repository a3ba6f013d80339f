--- Child processes for the harness: run one, wait for it without blocking
-- the loop, and read what it printed.
local sandlot = require "sandlot"
local uv = require "luv"
local json = require "dkjson"

local M = {}

--- CLOCK_MONOTONIC in milliseconds (the clock of the workload's gap log).
function M.now_ms()
  return uv.hrtime() / 1e6
end

local function read_all(pipe, chunks, finish)
  pipe:read_start(function(err, data)
    if err == nil and data ~= nil then
      chunks[#chunks + 1] = data
      return
    end
    pipe:close()
    finish()
  end)
end

--- Run argv (program and arguments) with `env` (a list of "NAME=value"
-- added to ours, or nil); suspends until it exits. Returns the exit code
-- (128 + signal when a signal ended it), stdout and stderr; or nil and
-- the reason when it could not start.
function M.run(argv, env)
  local stdout, stderr = uv.new_pipe(), uv.new_pipe()
  local out, err = {}, {}
  local full_env
  if env ~= nil then
    full_env = {}
    for name, value in pairs(uv.os_environ()) do
      full_env[#full_env + 1] = name .. "=" .. value
    end
    table.move(env, 1, #env, #full_env + 1, full_env)
  end
  return sandlot.await(function(done)
    local code
    local remaining = 3
    local function finish()
      remaining = remaining - 1
      if remaining == 0 then
        done(code, table.concat(out), table.concat(err))
      end
    end
    local handle, spawn_err
    handle, spawn_err = uv.spawn(argv[1], {
      args = { table.unpack(argv, 2) },
      stdio = { nil, stdout, stderr },
      env = full_env,
    }, function(exit_code, signal)
      code = signal ~= 0 and 128 + signal or exit_code
      handle:close()
      finish()
    end)
    if handle == nil then
      stdout:close()
      stderr:close()
      done(nil, ("cannot start %s: %s"):format(argv[1], spawn_err))
      return
    end
    read_all(stdout, out, finish)
    read_all(stderr, err, finish)
  end)
end

local function last_lines(text, count)
  local lines = {}
  for line in text:gmatch "[^\n]+" do
    lines[#lines + 1] = line
  end
  return table.concat(lines, "; ", math.max(1, #lines - count + 1))
end

--- Run argv and return its stdout when it exits 0; otherwise nil and a
-- message with the exit code and the last lines of its stderr.
function M.output(argv, env)
  local code, stdout, stderr = M.run(argv, env)
  if code == nil then
    return nil, stdout
  end
  if code ~= 0 then
    return nil, ("%s %s exited with %d: %s"):format(argv[1]:match "[^/]*$", argv[2] or "",
      code, last_lines(stderr, 3))
  end
  return stdout
end

--- Run argv and decode the JSON object it printed.
function M.json(argv, env)
  local stdout, err = M.output(argv, env)
  if stdout == nil then
    return nil, err
  end
  local value, _, decode_err = json.decode(stdout)
  if type(value) ~= "table" then
    return nil, ("%s printed no JSON object: %s"):format(argv[1], decode_err or stdout)
  end
  return value
end

--- Parse "key=value key=value" lines into a list of tables, one per line.
-- A line that starts with "criu_argv=" is one value, spaces included.
-- Values that read as numbers become numbers.
function M.parse_key_values(text)
  local lines = {}
  for line in text:gmatch "[^\n]+" do
    local fields = {}
    local argv = line:match "^criu_argv=(.*)$"
    if argv ~= nil then
      fields.criu_argv = argv
    else
      for key, value in line:gmatch "([%w_]+)=(%S*)" do
        fields[key] = tonumber(value) or value
      end
    end
    lines[#lines + 1] = fields
  end
  return lines
end

--- Read a whole file; nil and the reason when it cannot be read.
function M.read_file(path)
  local file, err = io.open(path, "rb")
  if file == nil then
    return nil, err
  end
  local text = file:read "a"
  file:close()
  return text
end

--- Replace the contents of a file.
function M.write_file(path, text)
  local file, err = io.open(path, "wb")
  if file == nil then
    return nil, err
  end
  file:write(text)
  file:close()
  return true
end

return M
