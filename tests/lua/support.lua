-- Helpers for specs that run the sandlot binary as a child process.
local sandlot = require "sandlot"
local uv = require "luv"

local support = {}

--- Path of the sandlot binary running this spec.
support.sandlot = uv.exepath()

local function collect(pipe, chunks, finish, on_data)
  pipe:read_start(function(err, data)
    assert(not err, err)
    if data then
      chunks[#chunks + 1] = data
      if on_data then
        on_data(data)
      end
    else
      pipe:close()
      finish()
    end
  end)
end

--- Run `command` (a list: program and arguments) with optional `input` on
-- stdin and `env` (a list of "NAME=value"); suspends until it exits.
-- `on_stdout(data, process)` receives each chunk of output as it arrives.
-- With `keep_stdin_open`, stdin stays open until the process exits.
-- Returns the exit code (128 + signal when a signal ended it), stdout and
-- stderr.
function support.run(command, options)
  options = options or {}
  local stdin, stdout, stderr = uv.new_pipe(), uv.new_pipe(), uv.new_pipe()
  local out, err = {}, {}
  return sandlot.await(function(done)
    local code
    local remaining = 3
    local function finish()
      remaining = remaining - 1
      if remaining == 0 then
        done(code, table.concat(out), table.concat(err))
      end
    end
    local args = { table.unpack(command, 2) }
    local handle, spawn_err
    handle, spawn_err = uv.spawn(command[1], {
      args = args,
      stdio = { stdin, stdout, stderr },
      env = options.env,
      cwd = options.cwd,
    }, function(exit_code, signal)
      code = signal ~= 0 and 128 + signal or exit_code
      handle:close()
      if options.keep_stdin_open then
        stdin:close()
      end
      finish()
    end)
    assert(handle, spawn_err)
    collect(stdout, out, finish, options.on_stdout and function(data)
      options.on_stdout(data, handle)
    end)
    collect(stderr, err, finish)
    if options.input then
      stdin:write(options.input)
    end
    if not options.keep_stdin_open then
      stdin:shutdown(function()
        stdin:close()
      end)
    end
  end)
end

--- Run the sandlot binary with `args`.
function support.run_sandlot(args, options)
  return support.run({ support.sandlot, table.unpack(args) }, options)
end

--- The environment of this process as a list, with `extra` added.
function support.environment(extra)
  local env = {}
  for name, value in pairs(uv.os_environ()) do
    if extra[name] == nil then
      env[#env + 1] = name .. "=" .. value
    end
  end
  for name, value in pairs(extra) do
    env[#env + 1] = name .. "=" .. value
  end
  return env
end

--- A fresh temporary directory; removed by support.remove_tree.
function support.temp_dir()
  return assert(uv.fs_mkdtemp("/tmp/sandlot-spec-XXXXXX"))
end

function support.remove_tree(path)
  support.run { "rm", "-rf", "--", path }
end

return support
