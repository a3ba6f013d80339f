-- The same Lua API on a VM sandbox: the agent behind QEMU's serial ports
-- speaks the same protocol, reached with sync markers. Timeouts,
-- auto_kill, <close> and failed boots work as for process sandboxes, and
-- an ended VM leaves no QEMU, RAM file, socket or disk behind. Needs root
-- and qemu-system-x86_64; boots with TCG where KVM is not usable.
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

local function create(options)
  options.backend = "vm"
  local sb, message = Sandbox.create(options)
  assert(sb, message)
  return sb
end

local function row_count()
  return #assert(Sandbox.list())
end

local function folder_count()
  local count = 0
  local scan = uv.fs_scandir(home .. "/sandboxes")
  while scan and uv.fs_scandir_next(scan) do
    count = count + 1
  end
  return count
end

--- Wait until the sandbox has ended; returns its record.
local function wait_dead(sb, what)
  sandboxes.eventually(function()
    return assert(sb:refresh()).state == "dead"
  end, what, 60)
  return assert(sb:info())
end

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

    -- Other sandlot processes use the VM while this one keeps a process
    -- (and so an agent port) open: each takes a free port of its own.
    local env = support.environment {
      SANDLOT_HOME = home,
      SANDLOT_VM_CACHE = uv.os_getenv "SANDLOT_VM_CACHE",
    }
    local tasks = {}
    for i = 1, 3 do
      local chunk = ([[
        local sb = assert(require("sandlot").Sandbox.get(%q))
        local r = assert(sb:exec "echo from process %d")
        io.write(r.stdout)
      ]]):format(sb.id, i)
      tasks[i] = sandlot.spawn(function()
        return support.run_sandlot({ "-e", chunk }, { env = env })
      end)
    end
    for i, task in ipairs(tasks) do
      local code, out, err = task:wait()
      assert.are.equal(0, code, err)
      assert.are.equal(("from process %d\n"):format(i), out)
    end
    assert(p:write "still here\n")
    assert.are.equal("still here", p:read_line())
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

  it("releases everything when killed", function()
    local sb = create {}
    local info = assert(sb:info())
    assert(sb:write_file("/root/f", "x"))
    assert(sb:kill())
    assert.are.equal("killed", assert(sb:info()).end_reason)
    assert.is_nil(sandboxes.wait_vm_clean(home, info))
    assert.is_true(sb:delete())
    assert.is_nil(uv.fs_stat(home .. "/sandboxes/" .. sb.id))
  end)

  it("names an ended sandbox once", function()
    local sb = create {}
    assert(sb:kill())
    for _, call in ipairs { sb.kill, sb.freeze, sb.thaw } do
      local ok, message, name = call(sb)
      assert.is_nil(ok)
      assert.are.equal("ESRCH", name)
      assert.are.equal("ESRCH: sandbox has ended (killed): " .. sb.id, message)
    end
    local ok, message, name = sb:set_timeout(5)
    assert.is_nil(ok)
    assert.are.equal("ESRCH", name)
    assert.are.equal("ESRCH: sandbox has ended (killed): " .. sb.id, message)
  end)

  it("is killed at the end of a <close> scope", function()
    local info
    do
      local sb <close> = create {}
      info = assert(sb:info())
      assert.are.equal("running", sb.state)
    end
    local sb = assert(Sandbox.get(info.id))
    assert.are.equal("dead", sb.state)
    assert.are.equal("killed", assert(sb:info()).end_reason)
    assert.is_nil(sandboxes.wait_vm_clean(home, info))
  end)
end)

describe("a VM timeout", function()
  it("kills the VM when it expires", function()
    local sb = create { timeout = 1 }
    local info = assert(sb:info())
    assert.is_true(info.deadline > info.created_at)
    assert.are.equal("kill", info.on_timeout)
    assert.are.equal("timeout", wait_dead(sb, "the timeout").end_reason)
    assert.is_nil(sandboxes.wait_vm_clean(home, info))
  end)

  it("can be set later and removed with 0", function()
    local sb = create {}
    assert.is_nil(assert(sb:info()).deadline)
    assert.is_true(sb:set_timeout(600))
    assert.is_true(assert(sb:info()).deadline > os.time())
    assert.is_true(sb:set_timeout(0))
    assert.is_nil(assert(sb:info()).deadline)
    assert.is_true(sb:set_timeout(1))
    assert.are.equal("timeout", wait_dead(sb, "the timeout set later").end_reason)
    local ok, message, name = sb:set_timeout(5)
    assert.is_nil(ok)
    assert.are.equal("ESRCH", name)
    assert.matches("sandbox has ended", message)
  end)

  it("takes the limits of a process sandbox", function()
    local rows = row_count()
    local none, message, name = Sandbox.create { backend = "vm", timeout = 10 ^ 13 }
    assert.is_nil(none)
    assert.are.equal("EINVAL", name)
    assert.are.equal("EINVAL: invalid timeout: 10000000000000 (expected whole seconds from 0 to 3153600000)",
      message)
    none, _, name = Sandbox.create { backend = "vm", on_timeout = "explode" }
    assert.is_nil(none)
    assert.are.equal("EINVAL", name)
    assert.are.equal(rows, row_count())
    local sb = create {}
    none, message, name = sb:set_timeout(10 ^ 13)
    assert.is_nil(none)
    assert.are.equal("EINVAL", name)
    assert.are.equal("EINVAL: invalid timeout: 10000000000000 (expected whole seconds from 0 to 3153600000)",
      message)
    -- The maximum is the same for create, set_timeout and the VM monitor.
    assert.is_true(sb:set_timeout(3153600000))
    assert(sb:kill())
  end)
end)

describe("auto_kill on a VM", function()
  it("ends the VM with the sandlot process that created it", function()
    local env = support.environment {
      SANDLOT_HOME = home,
      SANDLOT_VM_CACHE = uv.os_getenv "SANDLOT_VM_CACHE",
    }
    local code, out, err = support.run_sandlot({ "-e", [[
      local Sandbox = require("sandlot").Sandbox
      local tied = assert(Sandbox.create { backend = "vm", auto_kill = true })
      local free = assert(Sandbox.create { backend = "vm" })
      print(tied.id, free.id)
    ]] }, { env = env })
    assert.are.equal(0, code, err)
    local tied_id, free_id = out:match "^(%S+)\t(%S+)\n$"
    assert(tied_id, out)
    local tied = assert(Sandbox.get(tied_id))
    local info = assert(tied:info())
    assert.is_true(info.auto_kill)
    assert.are.equal("creator_exited", wait_dead(tied, "the creator's exit ends the VM").end_reason)
    assert.is_nil(sandboxes.wait_vm_clean(home, info))
    -- Both monitors saw the creator exit; only the tied VM ended.
    local free = assert(Sandbox.get(free_id))
    assert.are.equal("running", free.state)
    assert.are.equal("free\n", assert(free:exec "echo free").stdout)
    assert(free:kill())
  end)
end)

describe("a VM that fails to start", function()
  it("reports the agent's message and leaves nothing", function()
    local rows, folders = row_count(), folder_count()
    -- The agent cannot create a working directory below a file.
    local none, message, name = Sandbox.create { backend = "vm", cwd = "/etc/hostname/dir" }
    assert.is_nil(none)
    assert.are.equal("EIO", name)
    assert.matches("QEMU exited during boot", message, 1, true)
    assert.matches("(console: sandlot-agent: cannot enter /etc/hostname/dir: Not a directory)", message, 1, true)
    assert.are.equal(rows, row_count())
    assert.are.equal(folders, folder_count())
    assert.are.same({}, sandboxes.pids_with("qemu-system", home))
  end)

  it("rejects the limits a VM does not have", function()
    local rows = row_count()
    for _, options in ipairs { { pids = 10 }, { cpus = 1 }, { cpu_shares = 100 }, { memory = "16M" },
                               { memory = "300000K" } } do
      options.backend = "vm"
      local none, _, name = Sandbox.create(options)
      assert.is_nil(none)
      assert.are.equal("EINVAL", name)
    end
    assert.are.equal(rows, row_count())
  end)
end)

describe("a fork of a VM snapshot", function()
  it("rejects the options it cannot honour", function()
    local vm = create { auto_kill = true }
    local snap = assert(vm:snapshot())
    local none, message, name = Sandbox.create { snapshot = snap, backend = "process" }
    assert.is_nil(none)
    assert.are.equal("EINVAL", name)
    assert.are.equal("EINVAL: create sandbox: invalid backend: process (snapshot " .. snap.id
      .. " is a vm snapshot, and a sandbox made from a snapshot runs on the snapshot's backend)",
      message)
    none, message, name = Sandbox.create { snapshot = snap, env = { NEW = "1" } }
    assert.is_nil(none)
    assert.are.equal("EINVAL", name)
    assert.matches("env does not apply to a fork of " .. snap.id, message, 1, true)
    local fork = assert(Sandbox.create { snapshot = snap, backend = "vm", auto_kill = true })
    assert.are.equal("vm", fork.backend)
    assert(fork:kill())
    assert(vm:kill())
    assert(snap:delete())
  end)
end)
