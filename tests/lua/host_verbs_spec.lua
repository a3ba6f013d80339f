-- Sandboxes across sandlot processes: another process lists and kills a
-- sandbox this one created, auto_kill ties a sandbox to its creator, and
-- the ls, kill and gc commands.
local sandboxes = require "sandboxes"
sandboxes.require_sandboxes()

local sandlot = require "sandlot"
local support = require "support"
local uv = require "luv"
local Sandbox = sandlot.Sandbox

local home, env

setup(function()
  home = sandboxes.fresh_store()
  env = support.environment { SANDLOT_HOME = home }
end)

teardown(function()
  sandboxes.remove_store(home)
end)

--- `text` as a Lua pattern that matches only itself.
local function literal(text)
  return (text:gsub("%p", "%%%0"))
end

local function sandlot_command(args)
  return support.run_sandlot(args, { env = env })
end

describe("another sandlot process", function()
  it("sees, lists and kills a sandbox this one created", function()
    local sb = assert(Sandbox.create { labels = { owner = "spec" } })
    local info = assert(sb:info())
    local code, out, err = sandlot_command { "-e", [[
      local Sandbox = require("sandlot").Sandbox
      local sb = assert(Sandbox.get(arg[1]))
      print(sb.state, sb.labels.owner, assert(sb:exec "echo from the other process").stdout)
      for _, other in ipairs(assert(Sandbox.list { state = "running" })) do
        print("listed", other.id)
      end
    ]], sb.id }
    assert.are.equal(0, code, err)
    assert.matches("^running\tspec\tfrom the other process\n", out)
    assert.matches("listed\t" .. literal(sb.id), out)

    code, out, err = sandlot_command { "ls" }
    assert.are.equal(0, code, err)
    assert.matches("^ID +STATE +TEMPLATE +AGE\n", out)
    assert.matches(literal(sb.id) .. "  running  base +%d+s\n", out)

    code, out, err = sandlot_command { "kill", sb.id }
    assert.are.equal(0, code, err)
    assert.are.equal("killed " .. sb.id .. "\n", out)
    assert.are.equal("dead", assert(sb:refresh()).state)
    assert.is_nil(sandboxes.wait_clean(home, info))
    local ok, _, name = sb:exec "true"
    assert.is_nil(ok)
    assert.are.equal("ESRCH", name)

    code, out, err = sandlot_command { "kill", sb.id }
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.are.equal("sandlot: kill " .. sb.id .. ": ESRCH: sandbox has ended (killed)\n", err)

    code, out = sandlot_command { "ls" }
    assert.are.equal(0, code)
    assert.is_nil(out:find(sb.id, 1, true))
    code, out = sandlot_command { "ls", "-a" }
    assert.matches(literal(sb.id) .. "  dead", out)
  end)

  it("lists and deletes snapshots from the command line", function()
    local sb = assert(Sandbox.create { auto_kill = true })
    local named = assert(sb:snapshot { name = "cli", tag = "v1" })
    local unnamed = assert(sb:snapshot { memory = false })
    local code, out, err = sandlot_command { "snapshots" }
    assert.are.equal(0, code, err)
    assert.matches("^ID +NAME +SANDBOX +KIND +SIZE +AGE\n", out)
    assert.matches(literal(named.id) .. " +cli:v1 +" .. literal(sb.id) .. " +full +[%d.]+[BKMG]", out)
    assert.matches(literal(unnamed.id) .. " +%- +" .. literal(sb.id) .. " +fs ", out)
    -- Newest first.
    assert.is_true(out:find(unnamed.id, 1, true) < out:find(named.id, 1, true))

    code, out = sandlot_command { "snapshots", "-n", "cli:v1" }
    assert.are.equal(0, code)
    assert.is_nil(out:find(unnamed.id, 1, true))
    assert.truthy(out:find(named.id, 1, true))

    code, out, err = sandlot_command { "snapshots", "-s", "nope" }
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.matches('^sandlot: snapshots: EINVAL: invalid sandbox id: "nope"', err)
    code, _, err = sandlot_command { "snapshots", "-n" }
    assert.are.equal(2, code)
    assert.matches("snapshots: %-n needs a value", err)
    code, _, err = sandlot_command { "snapshots", "rm" }
    assert.are.equal(2, code)
    assert.matches("snapshots rm: missing ID", err)

    code, out, err = sandlot_command { "snapshots", "rm", "cli:v1", "sn-000000000000" }
    assert.are.equal(1, code)
    assert.are.equal("removed cli:v1\n", out)
    assert.matches("snapshots rm sn%-000000000000: ENOENT: snapshot not found", err)
    assert.is_nil(sandlot.snapshots.get(named.id))
    assert(sandlot.snapshots.delete(unnamed))
    assert(sb:kill())
  end)

  it("reports kill failures with their error names", function()
    local code, out, err = sandlot_command { "kill", "sb-000000000000", "nonsense" }
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.matches("kill sb%-000000000000: ENOENT: sandbox not found", err)
    assert.matches("kill nonsense: ENOENT: sandbox not found", err)
    code, _, err = sandlot_command { "kill" }
    assert.are.equal(2, code)
    assert.matches("kill: missing ID", err)
    code, _, err = sandlot_command { "ls", "--bogus" }
    assert.are.equal(2, code)
    assert.matches("ls: unexpected argument '%-%-bogus'", err)
  end)
end)

describe("auto_kill", function()
  it("kills the sandbox when its creator exits", function()
    local code, out, err = sandlot_command { "-e", [[
      local Sandbox = require("sandlot").Sandbox
      local kept = assert(Sandbox.create {})
      local tied = assert(Sandbox.create { auto_kill = true })
      print(kept.id, tied.id)
    ]] }
    assert.are.equal(0, code, err)
    local kept_id, tied_id = out:match "^(%S+)\t(%S+)\n$"
    local tied = assert(Sandbox.get(tied_id))
    sandboxes.eventually(function() return assert(tied:refresh()).state == "dead" end,
      "the tied sandbox ends")
    assert.are.equal("creator_exited", assert(tied:info()).end_reason)
    assert.is_nil(sandboxes.wait_clean(home, tied._info))
    local kept = assert(Sandbox.get(kept_id))
    assert.are.equal("running", kept.state)
    assert(kept:kill())
  end)
end)

describe("sandlot kill", function()
  it("kills a paused sandbox without a warning", function()
    local sb = assert(Sandbox.create {})
    assert(sb:pause { memory = false })
    local code, out, err = sandlot_command { "kill", sb.id }
    assert.are.equal(0, code, err)
    assert.are.equal("killed " .. sb.id .. "\n", out)
    assert.are.equal("", err)
    assert.are.equal("dead", assert(sb:refresh()).state)
  end)

  it("warns when a running sandbox lost its monitor", function()
    local sb = assert(Sandbox.create {})
    local info = assert(sb:info())
    assert(uv.kill(info.monitor_pid, "sigkill") == 0)
    sandboxes.eventually(function() return #sandboxes.pids_with("sandlot-monitor", sb.id) == 0 end,
      "the monitor is gone")
    local code, out, err = sandlot_command { "kill", sb.id }
    assert.are.equal(0, code, err)
    assert.are.equal("killed " .. sb.id .. "\n", out)
    assert.matches("level=warn event=sandbox.kill_orphan sandbox=" .. literal(sb.id), err)
    assert.is_nil(sandboxes.wait_clean(home, info))
  end)
end)

describe("sandlot gc", function()
  it("cleans a sandbox whose monitor died", function()
    local sb = assert(Sandbox.create {})
    local info = assert(sb:info())
    assert(uv.kill(info.monitor_pid, "sigkill") == 0)
    sandboxes.eventually(function() return #sandboxes.pids_with("sandlot-monitor", sb.id) == 0 end,
      "the monitor is gone")
    local code, out, err = sandlot_command { "gc" }
    assert.are.equal(0, code, err)
    assert.matches(literal(sb.id) .. "  running %-> dead %(monitor_lost%)\n", out)
    assert.matches("gc: cleaned 1 sandbox\n$", out)
    assert.are.equal("dead", assert(sb:refresh()).state)
    assert.is_nil(sandboxes.wait_clean(home, info))
    code, out = sandlot_command { "gc" }
    assert.are.equal(0, code)
    assert.are.equal("gc: cleaned 0 sandboxes\n", out)
    assert.are.same({ sandboxes = 0, mounts = 0, snapshots = 0, layers = 0, records = 0 },
      sandlot.gc())
  end)

  it("counts the layers it deletes apart from sandboxes", function()
    local sb = assert(Sandbox.create {})
    local files = assert(sb:snapshot { memory = false })
    local fork = assert(Sandbox.create { snapshot = files })
    assert(sandlot.snapshots.delete(files)) -- the fork keeps its layer
    assert(fork:kill())
    assert(sb:kill())
    local code, out, err = sandlot_command { "gc" }
    assert.are.equal(0, code, err)
    assert.are.equal("gc: cleaned 0 sandboxes, 1 unused layer\n", out)
    code, out, err = sandlot_command { "gc" }
    assert.are.equal(0, code, err)
    assert.are.equal("gc: cleaned 0 sandboxes\n", out)
  end)
end)

describe("sandlot rm and gc -a", function()
  it("delete records of ended sandboxes only", function()
    local sb = assert(Sandbox.create {})
    local code, out, err = sandlot_command { "rm", sb.id }
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.are.equal("sandlot: rm " .. sb.id .. ": EBUSY: sandbox is running (kill it first, or use rm -f)\n",
      err)
    assert.are.equal("running", assert(sb:refresh()).state)
    code, out, err = sandlot_command { "rm", "-f", sb.id }
    assert.are.equal(0, code, err)
    assert.are.equal("removed " .. sb.id .. "\n", out)
    assert.are.equal("ENOENT", select(3, Sandbox.get(sb.id)))
    assert.is_nil(uv.fs_stat(home .. "/sandboxes/" .. sb.id))
  end)

  it("keep recent records unless asked", function()
    local sb = assert(Sandbox.create {})
    assert(sb:kill())
    local code, out, err = sandlot_command { "gc" }
    assert.are.equal(0, code, err)
    assert.is_nil(out:find(sb.id, 1, true))
    assert.are.equal("dead", assert(Sandbox.get(sb.id)).state)
    code, out, err = sandlot_command { "gc", "-a" }
    assert.are.equal(0, code, err)
    assert.matches(literal(sb.id) .. "  removed %(ended %d+s ago%)\n", out)
    assert.matches("gc: removed %d+ records? of ended sandboxes\ngc: cleaned 0 sandboxes\n$", out)
    assert.are.equal("ENOENT", select(3, Sandbox.get(sb.id)))
    local other = assert(Sandbox.create {})
    assert(other:kill())
    local counts = assert(sandlot.gc { keep_ended = 0 })
    assert.are.equal(0, counts.sandboxes)
    assert.are.equal(1, counts.records)
    assert.are.equal("ENOENT", select(3, Sandbox.get(other.id)))
    assert.has_error(function() sandlot.gc { keep = 1 } end)
    assert.are.equal("EINVAL", select(3, sandlot.gc { keep_ended = -1 }))
  end)
end)
