-- Process handles of sandbox:spawn against a real sandbox: stdin, reads,
-- waits, signals, callbacks, flow control, and handles that survive a
-- dropped agent connection or come from sandbox:process.
local sandboxes = require "sandboxes"
sandboxes.require_sandboxes()

local sandlot = require "sandlot"
local support = require "support"
local Sandbox = sandlot.Sandbox

local home, sb

setup(function()
  home = sandboxes.fresh_store()
  sb = assert(Sandbox.create {})
end)

teardown(function()
  sandboxes.remove_store(home)
end)

--- Wait until the agent replies again after it closed our connection.
local function reconnect()
  sandboxes.eventually(function()
    return sb:_call("test", "ping") ~= nil
  end, "the agent answers")
end

describe("sandbox:spawn", function()
  it("drives an interactive python", function()
    local p = assert(sb:spawn { "python3", "-u", "-i" })
    assert.are.equal("running", p.state)
    assert.is_true(p.id > 0)
    assert.is_true(p.pid > 1)
    assert.matches("^sandlot.process %(id %d+, pid %d+, running: python3 %-u %-i%)$", tostring(p))
    assert.is_true(p:write "x = 41\n")
    assert.is_true(p:write "print(x + 1)\n")
    assert.are.equal("42", p:read_line())
    assert.is_true(p:write "import sys; print('to stderr', file=sys.stderr)\n")
    assert.is_true(p:write "print('a'); print('b')\n")
    assert.are.equal("a", p:read_line())
    assert.are.equal("b", p:read_line())
    assert.is_true(p:kill "TERM")
    local status = assert(p:wait())
    assert.are.equal(15, status.signal)
    assert.are.equal(143, status.exit_code)
    assert.matches("to stderr\n", p:read_all "stderr")
    assert.is_nil(p:read_line())
    local ok, _, name = p:kill()
    assert.is_nil(ok)
    assert.are.equal("ESRCH", name)
    assert.are.equal("exited", p.state)
  end)

  it("reads bytes, lines and everything", function()
    local p = assert(sb:spawn("printf 'one\\ntwo\\nthree'; printf 'E' >&2"))
    local lines = {}
    for line in p:lines() do
      lines[#lines + 1] = line
    end
    assert.are.same({ "one", "two", "three" }, lines)
    assert.are.equal("E", p:read_all "stderr")
    assert.are.equal("", p:read_all())
    assert.are.equal(0, assert(p:wait()).exit_code)
  end)

  it("reads some bytes at a time", function()
    local p = assert(sb:spawn { "cat" })
    assert(p:write "abcdef")
    local got = ""
    while #got < 6 do
      got = got .. assert(p:read(4))
    end
    assert.are.equal("abcdef", got)
    assert.is_true(p:close_stdin())
    assert.is_nil(p:read())
    local ok, _, name = p:write "late"
    assert.is_nil(ok)
    assert.is_true(name == "EPIPE" or name == "ENOENT")
    assert.are.equal(0, assert(p:wait()).exit_code)
  end)

  it("waits with a timeout", function()
    local p = assert(sb:spawn { "sleep", "30" })
    local ok, message, name = p:wait(0.1)
    assert.is_nil(ok)
    assert.are.equal("ETIMEDOUT", name)
    assert.matches("did not exit within 0.1 s", message)
    assert(p:kill())
    assert.are.equal(9, assert(p:wait(10)).signal)
  end)

  it("passes output to callbacks as tasks", function()
    local out, err = {}, {}
    local p = assert(sb:spawn("for i in $(seq 1 20); do echo $i; echo e$i >&2; done", {
      on_stdout = function(chunk)
        sandlot.sleep(1) -- callbacks may suspend, and the order stays
        out[#out + 1] = chunk
      end,
      on_stderr = function(chunk) err[#err + 1] = chunk end,
    }))
    local status = assert(p:wait())
    assert.are.equal(0, status.exit_code)
    local expected_out, expected_err = {}, {}
    for i = 1, 20 do
      expected_out[i] = i .. "\n"
      expected_err[i] = "e" .. i .. "\n"
    end
    assert.are.equal(table.concat(expected_out), table.concat(out))
    assert.are.equal(table.concat(expected_err), table.concat(err))
    assert.is_nil(p:read_line())
  end)

  it("rejects reads of output that goes to a callback", function()
    local p = assert(sb:spawn({ "cat" }, { on_stdout = function() end }))
    assert.has_error(function() p:read_line() end,
      "process:read_line: output goes to the on_stdout/on_stderr callbacks of this process")
    assert(p:close_stdin())
    assert(p:wait())
  end)

  it("stops the callbacks of a process whose callback raised", function()
    local calls = 0
    local p = assert(sb:spawn("echo first; sleep 0.2; echo second", {
      on_stdout = function()
        calls = calls + 1
        error("callback broke")
      end,
    }))
    assert.are.equal(0, assert(p:wait()).exit_code)
    assert.are.equal(1, calls)
    -- The host and other work go on.
    assert.are.equal("ok\n", assert(sb:exec "echo ok").stdout)
  end)

  it("raises on a closed handle", function()
    local p = assert(sb:spawn { "sleep", "30" })
    local id = p.id
    p:close()
    p:close()
    assert.are.equal("closed", p.state)
    assert.are.equal("sandlot.process (closed)", tostring(p))
    assert.has_error(function() p:read_line() end, "attempt to use a closed process handle")
    assert.has_error(function() p:write "x" end, "attempt to use a closed process handle")
    -- Closing a spawned handle leaves the process running in the agent.
    local again = assert(sb:process(id))
    assert.are.equal("running", again.state)
    assert(again:kill())
    assert.are.equal(9, assert(again:wait()).signal)
  end)

  it("raises argument errors at the caller's line", function()
    local p = assert(sb:spawn { "sleep", "30" })
    local function error_of(call)
      local ok, err = pcall(call)
      assert.is_false(ok)
      return err
    end
    assert.matches('^process_spec%.lua:%d+: process:read: bad argument #2 %(expected "stdout" or "stderr", '
      .. 'got "stdxxx"%)$', error_of(function() p:read(10, "stdxxx") end))
    assert.matches("^process_spec%.lua:%d+: process:read: bad argument #1 %(expected a byte count > 0, got 0%)$",
      error_of(function() p:read(0) end))
    assert.matches("^process_spec%.lua:%d+: process:wait: bad argument #1",
      error_of(function() p:wait(-1) end))
    assert.matches("^process_spec%.lua:%d+: process:write: argument 1 must be a string",
      error_of(function() p:write(42) end))
    p:close()
    for _, call in ipairs {
      function() p:read() end,
      function() p:wait() end,
      function() p:write "x" end,
      function() p:kill() end,
      function() p:on_stdout(print) end,
    } do
      assert.matches("^process_spec%.lua:%d+: attempt to use a closed process handle$", error_of(call))
    end
  end)

  it("keeps all output when the reader is slow", function()
    -- 12 MiB is more than the handle buffers before it stops following.
    local p = assert(sb:spawn("python3 -c 'import sys\nfor i in range(393216): sys.stdout.write(\"%031d\\n\" % i)'"))
    sandlot.sleep(500)
    local count, size = 0, 0
    for line in p:lines() do
      assert(line == ("%031d"):format(count), line)
      count = count + 1
      size = size + #line + 1
    end
    assert.are.equal(393216, count)
    assert.are.equal(12 * 1024 * 1024, size)
    assert.are.equal(0, assert(p:wait()).exit_code)
  end)
end)

describe("stdin larger than one request", function()
  -- The agent takes at most 4 MiB per request, so these go in parts.
  local MiB = 1024 * 1024

  it("reaches exec in full", function()
    local result = assert(sb:exec("wc -c", { stdin = ("z"):rep(10 * MiB) }))
    assert.are.equal(0, result.exit_code)
    assert.are.equal("10485760\n", result.stdout)
  end)

  it("is written while exec streams the output", function()
    -- cat writes back what it reads, so the callback gets all of it in
    -- order while the input is still written.
    local input = ("0123456789abcdef"):rep(MiB // 2) -- 8 MiB
    local parts = {}
    local result = assert(sb:exec("cat", {
      stdin = input,
      on_stdout = function(chunk)
        parts[#parts + 1] = chunk
      end,
    }))
    assert.are.equal(0, result.exit_code)
    local output = table.concat(parts)
    assert.are.equal(#input, #output)
    assert.is_true(output == input)
  end)

  it("is no failure when the process stops reading", function()
    local result = assert(sb:exec("head -c 10", { stdin = ("y"):rep(6 * MiB) }))
    assert.are.equal(0, result.exit_code)
    assert.are.equal(("y"):rep(10), result.stdout)
  end)

  it("goes through process:write in full", function()
    local p = assert(sb:spawn "wc -c")
    assert(p:write(("z"):rep(10 * MiB)))
    assert(p:close_stdin())
    assert.are.equal("10485760\n", p:read_all())
    assert.are.equal(0, assert(p:wait()).exit_code)
  end)

  it("leaves a command over 4 MiB to fail with EMSGSIZE", function()
    local none, message, name = sb:exec("true " .. ("x"):rep(5 * MiB))
    assert.is_nil(none)
    assert.are.equal("EMSGSIZE", name)
    assert.matches("^EMSGSIZE: message too large for the agent protocol: %d+ bytes %(at most 4194304%)$",
      message)
  end)

  -- Reads all stdin, then prints its runs of equal bytes ("a3 b2" for
  -- "aaabb"). Its output stays small, so nothing waits for a reader.
  local runs = [[python3 -c "
import itertools, sys
data = sys.stdin.buffer.read().decode()
print(' '.join('%s%d' % (k, len(list(g))) for k, g in itertools.groupby(data)))
"]]

  it("of spawn comes before later writes", function()
    local p = assert(sb:spawn(runs, { stdin = ("s"):rep(6 * MiB) }))
    assert(p:write "TT")
    assert(p:close_stdin())
    assert.are.equal(("s%d T2"):format(6 * MiB), p:read_line())
    assert.are.equal(0, assert(p:wait()).exit_code)
  end)

  it("of two tasks does not mix", function()
    local p = assert(sb:spawn(runs))
    local writers = {}
    for i, byte in ipairs { "a", "b" } do
      writers[i] = sandlot.spawn(function()
        return p:write(byte:rep(3 * MiB))
      end)
    end
    assert(sandlot.wait_all(writers))
    assert(p:close_stdin())
    local line = p:read_line()
    assert.is_true(line == ("a%d b%d"):format(3 * MiB, 3 * MiB)
      or line == ("b%d a%d"):format(3 * MiB, 3 * MiB), line)
    assert.are.equal(0, assert(p:wait()).exit_code)
  end)
end)

describe("process handles", function()
  it("keep working after the agent drops the connection", function()
    local p = assert(sb:spawn { "python3", "-u", "-i" })
    assert(p:write "x = 41\n")
    assert(p:write "print('before', x)\n")
    assert.are.equal("before 41", p:read_line())
    -- quiesce closes every client connection of the agent, as before a dump.
    assert(sb:_call("test", "quiesce"))
    reconnect()
    assert(p:write "print('after', x + 1)\n")
    assert.are.equal("after 42", p:read_line())
    assert(p:close_stdin())
    assert.are.equal(0, assert(p:wait()).exit_code)
  end)

  it("keep output produced while the connection is down", function()
    local p = assert(sb:spawn("sleep 0.3; echo produced while away"))
    assert(sb:_call("test", "quiesce"))
    assert.are.equal("produced while away", p:read_line())
    assert.are.equal(0, assert(p:wait()).exit_code)
  end)

  it("come back from sandbox:processes through another connection", function()
    local p = assert(sb:spawn { "sh", "-c", "echo ready; read line; echo got $line" })
    assert.are.equal("ready", p:read_line())
    local id = p.id
    local found
    for _, entry in ipairs(assert(sb:processes())) do
      if entry.id == id then
        found = entry
      end
    end
    assert.are.equal("running", found.state)
    assert.are.equal("sh -c echo ready; read line; echo got $line", found.command)
    assert.are.equal(p.pid, found.pid)
    assert.is_true(rawequal(sb:process(id), p))
    -- Another sandlot process takes the process over through its own
    -- connection; this handle then reports that it was taken.
    local script = [[
      local Sandbox = require("sandlot").Sandbox
      local sb = assert(Sandbox.get(arg[1]))
      local handle = assert(sb:process(tonumber(arg[2])))
      assert(handle:write "hello\n")
      print(handle:read_line())
      print(assert(handle:wait()).exit_code)
    ]]
    local code, out, err = support.run_sandlot({ "-e", script, sb.id, tostring(id) },
      { env = support.environment { SANDLOT_HOME = home } })
    assert.are.equal(0, code, err)
    assert.are.equal("got hello\n0\n", out)
    local ok, message, name = p:wait()
    assert.is_nil(ok)
    assert.are.equal("ECANCELED", name)
    assert.matches("attached by another request", message)
    local _, _, name = sb:process(987654)
    assert.are.equal("ENOENT", name)
  end)

  it("fail with ESRCH when their sandbox is killed", function()
    local other = assert(Sandbox.create {})
    local p = assert(other:spawn { "sleep", "30" })
    local reader = sandlot.spawn(function()
      return p:read_line()
    end)
    sandlot.sleep(50)
    assert(other:kill())
    local value, message, name = reader:wait()
    assert.is_nil(value)
    assert.are.equal("ESRCH", name)
    assert.are.equal("ESRCH: sandbox has ended (killed): " .. other.id, message)
    local _, _, wait_name = p:wait()
    assert.are.equal("ESRCH", wait_name)
  end)

  it("fail with ESRCH when another process kills their sandbox", function()
    local other = assert(Sandbox.create {})
    local p = assert(other:spawn { "sleep", "30" })
    local code, _, err = support.run_sandlot({ "kill", other.id },
      { env = support.environment { SANDLOT_HOME = home } })
    assert.are.equal(0, code, err)
    -- The handle reconnects for a while before it gives up.
    local value, message, name = p:read_line()
    assert.is_nil(value)
    assert.are.equal("ESRCH", name)
    assert.matches("sandbox has ended %(killed%)", message)
  end)
end)
