-- Resource limits of process sandboxes seen through the Lua API: a fork
-- bomb stops at the pids limit and a memory hog at the memory limit,
-- while the sandbox and the host go on.
local sandboxes = require "sandboxes"
sandboxes.require_sandboxes()

local sandlot = require "sandlot"
local Sandbox = sandlot.Sandbox

local home

setup(function()
  home = sandboxes.fresh_store()
end)

teardown(function()
  sandboxes.remove_store(home)
end)

--- The value after `key` in a cgroup file of the sandbox (the first
-- number when `key` is nil), or nil. On cgroup v2 every file is in the
-- one "unified" folder.
local function cgroup_value(info, controller, file, key)
  local folder = info.cgroups[controller] or info.cgroups.unified
  local text = sandboxes.read(folder .. "/" .. file) or ""
  if key == nil then
    return tonumber(text:match "%d+")
  end
  return tonumber(text:match(key .. " (%d+)"))
end

describe("limits", function()
  it("stop a fork bomb at the pids limit", function()
    local sb = assert(Sandbox.create { pids = 64 })
    local info = assert(sb:info())
    local bomb = [[
import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            os.closerange(0, 3)  # let the exec end without waiting for the children
            time.sleep(60)
            os._exit(0)
        n += 1
except OSError as e:
    print(n, e.errno)
]]
    local r = assert(sb:exec({ "python3", "-c", bomb }, { timeout = 30 }))
    local forked, errno = r.stdout:match "^(%d+) (%d+)\n$"
    assert.are.equal("11", errno) -- EAGAIN
    assert.is_true(tonumber(forked) > 0)
    assert.is_true(tonumber(forked) < 64)
    assert.is_true(cgroup_value(info, "pids", "pids.current") <= 64)
    assert.is_true(cgroup_value(info, "pids", "pids.events", "max") > 0)
    -- The agent still serves, and kill removes every bomb process.
    assert.are.equal("alive\n", assert(sb:exec({ "echo", "alive" })).stdout)
    assert(sb:kill())
    assert.is_nil(sandboxes.wait_clean(home, info))
  end)

  it("stop a memory hog at the memory limit", function()
    local sb = assert(Sandbox.create { memory = "64M" })
    local info = assert(sb:info())
    local r = assert(sb:exec("exec python3 -c 'b = bytearray(512 << 20); print(\"allocated\")'",
      { timeout = 30 }))
    assert.are.equal("", r.stdout)
    assert.are.equal(9, r.signal)
    local events = info.cgroups.memory and "memory.oom_control" or "memory.events"
    assert.is_true(cgroup_value(info, "memory", events, "oom_kill") > 0)
    assert.are.equal("alive\n", assert(sb:exec "echo alive").stdout)
    assert.are.equal("running", assert(sb:refresh()).state)
    assert(sb:kill())
    assert.is_nil(sandboxes.wait_clean(home, info))
  end)
end)
