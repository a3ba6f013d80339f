-- Snapshots, pauses and rollbacks taken while other tasks of the same
-- script start commands, start processes and move files on the same
-- sandbox. The other tasks start at different moments around the dump:
-- before it, while its connection is being opened, and during it. Every
-- operation and every command must end with its normal result.
local sandboxes = require "sandboxes"
sandboxes.require_sandboxes()

local sandlot = require "sandlot"
local support = require "support"
local uv = require "luv"
local Sandbox = sandlot.Sandbox

local source_dir = os.getenv "SANDLOT_SOURCE_DIR" or "../.."
if not uv.fs_stat(source_dir .. "/deps/criu/sbin/criu") then
  io.stderr:write("SKIPPED: no CRIU in deps/criu: run tools/deps.sh criu\n")
  os.exit(77)
end

local home

setup(function()
  home = sandboxes.fresh_store()
end)

teardown(function()
  sandboxes.remove_store(home)
end)

local function create()
  local sb, message = Sandbox.create { auto_kill = true }
  assert(sb, message)
  return sb
end

-- Delays in milliseconds before a task starts its request, so that the
-- request reaches the agent at a different point of the dump each time.
-- false starts it without suspending first.
local offsets = { false, 0, 1, 2, 3, 5, 8, 13, 21, 34 }

local function after(offset, fn)
  return sandlot.spawn(function()
    if offset then
      sandlot.sleep(offset)
    end
    return fn()
  end)
end

-- Start the requests of one round on `sb`: an exec, a spawned process
-- that echoes a line, a file write and a listing. Returns the tasks and a
-- check that asserts their results.
local function start_requests(sb, offset, round)
  local text = ("round %d"):format(round)
  local tasks = {
    after(offset, function()
      return sb:exec("sleep 0.1; echo " .. text)
    end),
    after(offset, function()
      local process, message, name = sb:spawn { "sh", "-c", "read line; echo got $line" }
      if not process then
        return nil, message, name
      end
      local ok
      ok, message, name = process:write(text .. "\n")
      if not ok then
        return nil, message, name
      end
      local line
      line, message, name = process:read_line()
      if not line then
        return nil, message, name
      end
      local result
      result, message, name = process:wait()
      if not result then
        return nil, message, name
      end
      return { line = line, exit_code = result.exit_code }
    end),
    after(offset, function()
      return sb:write_file("/tmp/round", text)
    end),
    after(offset, function()
      return sb:processes()
    end),
  }
  local function check()
    local results = assert(sandlot.wait_all(tasks))
    assert.are.equal(0, results[1].exit_code)
    assert.are.equal(text .. "\n", results[1].stdout)
    assert.are.equal("got " .. text, results[2].line)
    assert.are.equal(0, results[2].exit_code)
    assert.is_true(results[3])
    assert.are.equal("table", type(results[4]))
  end
  return check
end

describe("a snapshot taken while commands start", function()
  it("succeeds and leaves every command its result", function()
    local sb = create()
    for round, offset in ipairs(offsets) do
      local check = start_requests(sb, offset, round)
      local snap, message = sb:snapshot { name = "interleave" .. round }
      assert(snap, message)
      check()
    end
    assert(sb:kill())
  end)

  it("succeeds on a sandbox that no task has reached yet", function()
    -- A new object per round, as in a script that creates a sandbox and
    -- snapshots it while another task sends the first command.
    for round, offset in ipairs(offsets) do
      local sb <close> = create()
      local check = start_requests(sb, offset, round)
      local snap, message = sb:snapshot { name = "first" .. round }
      assert(snap, message)
      check()
      local fork <close> = assert(Sandbox.create { snapshot = snap, auto_kill = true })
      assert.are.equal(0, assert(fork:exec "true").exit_code)
    end
  end)

  it("succeeds while two snapshots of one sandbox race", function()
    local sb <close> = create()
    for round, offset in ipairs(offsets) do
      local check = start_requests(sb, offset, round)
      local first = after(offset, function()
        return sb:snapshot { name = "race", wait = 60 }
      end)
      local second, message = sb:snapshot { name = "race", wait = 60 }
      assert(second, message)
      assert(first:wait())
      check()
    end
  end)
end)

describe("a pause and a rollback while commands start", function()
  it("pause: commands that started wait for the resume", function()
    local sb <close> = create()
    for round, offset in ipairs(offsets) do
      local check = start_requests(sb, offset, round)
      local ok, message = sb:pause()
      assert(ok, message)
      ok, message = sb:resume()
      assert(ok, message)
      check()
    end
  end)

  it("rollback: the sandbox keeps serving new commands", function()
    local sb <close> = create()
    local snap = assert(sb:snapshot { name = "base" })
    for round, offset in ipairs(offsets) do
      local exec = after(offset, function()
        return sb:exec("echo " .. round)
      end)
      local ok, message = sb:rollback(snap)
      assert(ok, message)
      -- The command ran before the rollback, or the rollback cancelled
      -- it: ECANCELED when it waited in this host's held connection,
      -- ECONNRESET when the agent had read it but not started it yet.
      local result, err = exec:wait()
      if result then
        assert.are.equal(0, result.exit_code)
      elseif err:match "^ECONNRESET" then
        assert.matches("connection to the agent lost", err)
      else
        assert.are.equal("ECANCELED: sandbox rolled back to " .. snap.id
          .. ": get new process handles with sandbox:process(id)", err)
      end
      assert.are.equal(round .. "\n", assert(sb:exec("echo " .. round)).stdout)
    end
  end)
end)

describe("a snapshot while another sandlot process uses the sandbox", function()
  it("succeeds, and the other process's commands all complete", function()
    local sb <close> = create()
    -- The other process runs commands in a loop until it finds the stop
    -- file, and prints one line per command.
    local script = [[
      local sandlot = require "sandlot"
      local sb = assert(sandlot.Sandbox.get(arg[1]))
      local count = 0
      while true do
        local result, message = sb:exec("echo " .. count)
        if not result then
          print("failed: " .. message)
          os.exit(1)
        end
        assert(result.stdout == count .. "\n", result.stdout)
        if count == 0 then
          assert(sb:write_file("/tmp/started", ""))
        end
        count = count + 1
        local stop = sb:stat("/tmp/stop")
        if stop and count >= 20 then
          break
        end
      end
      print("done " .. count)
    ]]
    local path = home .. "/other.lua"
    local file = assert(io.open(path, "w"))
    file:write(script)
    file:close()
    local other = sandlot.spawn(function()
      return support.run({ support.sandlot, "run", path, sb.id }, {
        env = { "SANDLOT_HOME=" .. home, "PATH=" .. os.getenv "PATH" },
      })
    end)
    while not sb:stat "/tmp/started" do
      sandlot.sleep(20)
    end
    for round = 1, 10 do
      local snap, message = sb:snapshot { name = "shared" .. round }
      assert(snap, message)
    end
    assert(sb:write_file("/tmp/stop", ""))
    local code, stdout, stderr = other:wait()
    assert.are.equal(0, code, stdout .. stderr)
    assert.matches("^done %d+\n$", stdout)
  end)
end)
