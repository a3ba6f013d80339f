-- The same Lua API on a VM sandbox: the agent behind QEMU's serial port
-- speaks the same protocol, reached with sync markers. Needs root and
-- qemu-system-x86_64; boots with TCG where KVM is not usable.
local sandboxes = require "sandboxes"
local support = require "support"
local uv = require "luv"

sandboxes.require_sandboxes()
if support.run { "sh", "-c", "command -v qemu-system-x86_64" } ~= 0 then
  io.stderr:write "SKIPPED: qemu-system-x86_64 is not installed\n"
  os.exit(77)
end

local sandlot = require "sandlot"
local Sandbox = sandlot.Sandbox

local home

setup(function()
  -- The kernel and initramfs cache the C VM tests share.
  local build = os.getenv "SANDLOT_BUILD_DIR" or "/tmp"
  uv.os_setenv("SANDLOT_VM_CACHE", build .. "/vm-cache")
  home = sandboxes.fresh_store()
end)

teardown(function()
  sandboxes.remove_store(home)
end)

describe("a VM sandbox", function()
  it("runs commands, processes and files through the Lua API", function()
    local sb = assert(Sandbox.create { backend = "vm", memory = "256M" })
    assert.are.equal("vm", sb.backend)
    assert.are.equal("running", sb.state)
    local r = assert(sb:exec [[python3 -c 'print("hello from python", 6 * 7)']])
    assert.are.equal("hello from python 42\n", r.stdout)
    assert.are.equal(0, r.exit_code)
    local _, _, name = sb:exec { "no-such-program" }
    assert.are.equal("ENOENT", name)

    local data = {}
    for i = 0, 255 do
      data[#data + 1] = string.char(i)
    end
    data = table.concat(data):rep(4096)
    assert(sb:write_file("/tmp/blob", data))
    assert.is_true(data == sb:read_file "/tmp/blob")

    local p = assert(sb:spawn { "cat" })
    assert(p:write "through the serial port\n")
    assert.are.equal("through the serial port", p:read_line())
    assert(p:close_stdin())
    assert.are.equal(0, assert(p:wait()).exit_code)

    local info = assert(sb:info())
    assert(sb:kill())
    local ok
    ok, _, name = sb:exec "true"
    assert.is_nil(ok)
    assert.are.equal("ESRCH", name)
    sandboxes.eventually(function()
      return not uv.fs_stat("/proc/" .. info.init_pid)
    end, "QEMU exits")
  end)
end)
