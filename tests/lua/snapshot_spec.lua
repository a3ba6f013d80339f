-- Snapshots, forks, pause, resume and rollback through the Lua API, on
-- real process sandboxes and the built CRIU. State kept only in a
-- process's memory continues in forks and after a resume, process
-- handles keep working, and snapshots are listed page by page.
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

local function create(options)
  local sb, message = Sandbox.create(options)
  assert(sb, message)
  return sb
end

local adder, add = sandboxes.adder, sandboxes.add

describe("sandbox:snapshot", function()
  local sb, process, snap

  setup(function()
    sb = create { auto_kill = true }
    process = assert(sb:spawn(adder))
    assert.are.equal(5, add(process, 5))
    local message
    snap, message = sb:snapshot { name = "loaded", tag = "v1", labels = { step = "3" } }
    assert(snap, message)
  end)

  it("returns the snapshot record", function()
    assert.matches("^sn%-%x+$", snap.id)
    assert.are.equal("loaded", snap.name)
    assert.are.equal("v1", snap.tag)
    assert.are.equal("3", snap.labels.step)
    assert.are.equal(sb.id, snap.sandbox_id)
    assert.are.equal("full", snap.kind)
    assert.is_true(snap.size > 0)
    assert.is_true(math.abs(snap.created_at - os.time()) < 60)
    assert.is_true(snap.pause > 0 and snap.pause < 5)
    assert.matches("loaded:v1", tostring(snap))
  end)

  it("keeps the source running with the same id", function()
    assert.are.equal(6, add(process, 1))
    assert(sb:refresh())
    assert.are.equal("running", sb.state)
  end)

  it("forks continue from the snapshot's memory and diverge", function()
    local child = assert(Sandbox.create { snapshot = snap.id })
    assert.are_not.equal(sb.id, child.id)
    local copy = assert(child:process(process.id))
    assert.are.equal(15, add(copy, 10))
    assert.are.equal(7, add(process, 1))
    local kids, message = Sandbox.create_many { snapshot = snap, count = 3 }
    assert(kids, message)
    assert.are.equal(3, #kids)
    local hosts, distinct = {}, 0
    for i, kid in ipairs(kids) do
      local handle = assert(kid:process(process.id))
      assert.are.equal(5 + i, add(handle, i))
      local result = assert(kid:exec "hostname")
      assert.are.equal(kid.id .. "\n", result.stdout)
      assert.are.equal(result.stdout, kid:read_file "/etc/hostname")
      if not hosts[result.stdout] then
        distinct = distinct + 1
      end
      hosts[result.stdout] = true
      assert(kid:kill())
    end
    assert.are.equal(3, distinct)
    assert(child:kill())
  end)

  it("forks of forks stack their files", function()
    local child = assert(Sandbox.create { snapshot = "loaded:v1" })
    assert(child:write_file("/from-child", "child"))
    local grandsnap = assert(child:snapshot())
    local grandchild = assert(Sandbox.create { snapshot = grandsnap })
    assert.are.equal("child", grandchild:read_file "/from-child")
    assert.are.equal(25, add(assert(grandchild:process(process.id)), 20))
    assert(grandchild:kill())
    assert(child:kill())
    assert(sandlot.snapshots.delete(grandsnap))
  end)

  it("fails on bad options and values", function()
    assert.has_error(function()
      sb:snapshot { nme = "x" }
    end, 'sandbox:snapshot: unknown option "nme"')
    assert.has_error(function()
      sb:snapshot { memory = "no" }
    end)
    local ok, message, name = sb:snapshot { wait = -1 }
    assert.is_nil(ok)
    assert.are.equal("EINVAL", name)
    ok, message, name = sb:snapshot { name = "loaded", tag = "v1" }
    assert.is_nil(ok)
    assert.are.equal("EEXIST", name)
    -- The operation comes once, with the sandbox.
    assert.are.equal("EEXIST: snapshot " .. sb.id .. ": snapshot name is taken: loaded:v1", message)
    ok, message = sb:snapshot { name = "" }
    assert.is_nil(ok)
    assert.are.equal("EINVAL: snapshot " .. sb.id .. ": invalid snapshot name: empty", message)
    ok, message, name = sb:snapshot { tag = "alone" }
    assert.is_nil(ok)
    assert.are.equal("EINVAL", name)
    assert.matches("^EINVAL: ", message)
    ok, message, name = sb:snapshot { wait = 0 / 0 }
    assert.is_nil(ok)
    assert.are.equal("EINVAL", name)
    assert.matches("invalid wait", message, 1, true)
  end)

  it("raises argument errors at the caller's line", function()
    local function error_of(call)
      local ok, err = pcall(call)
      assert.is_false(ok)
      return err
    end
    local here = "^snapshot_spec%.lua:%d+: "
    assert.matches(here .. 'sandbox:snapshot: unknown option "nme"$',
      error_of(function() sb:snapshot { nme = "x" } end))
    assert.matches(here .. "sandbox:snapshot: labels must map names to strings or numbers$",
      error_of(function() sb:snapshot { labels = { true } } end))
    assert.matches(here .. "sandbox:pause: option memory must be a boolean, got string$",
      error_of(function() sb:pause { memory = "no" } end))
    local expected = 'argument 1 must be a snapshot object or a string %(id, "name:tag" or "name"%)'
    assert.matches(here .. "sandbox:rollback: " .. expected .. ", got number$",
      error_of(function() sb:rollback(42) end))
    assert.matches(here .. "sandlot.snapshots.get: " .. expected .. ", got nil$",
      error_of(function() sandlot.snapshots.get() end))
    assert.matches(here .. "sandlot.snapshots.list: option sandbox must be a string or table, got number$",
      error_of(function() sandlot.snapshots.list { sandbox = 3 } end))
    assert.matches(here .. "Sandbox.create_many: option count must be a number, got nil$",
      error_of(function() Sandbox.create_many { snapshot = snap } end))
    assert.matches(here .. "Sandbox.create: option snapshot must be a snapshot object, id or reference$",
      error_of(function() Sandbox.create { snapshot = {} } end))
    assert.matches(here .. "Sandbox.connect: argument 1 must be a string, got number$",
      error_of(function() Sandbox.connect(3) end))
  end)

  it("rejects NUL bytes and = in names", function()
    local function check_einval(expected, ok, message, name)
      assert.is_nil(ok)
      assert.are.equal("EINVAL", name)
      assert.are.equal(expected, message)
    end
    check_einval('EINVAL: invalid name: "a\\0b" (contains a NUL byte)', sb:snapshot { name = "a\0b" })
    check_einval('EINVAL: invalid tag: "v\\0" (contains a NUL byte)', sb:snapshot { name = "n", tag = "v\0" })
    check_einval('EINVAL: invalid label name: a=b (expected a name without "=")',
      sb:snapshot { labels = { ["a=b"] = "c" } })
    check_einval('EINVAL: invalid value of label k: "v\\0w" (contains a NUL byte)',
      sb:snapshot { labels = { k = "v\0w" } })
    local reference = 'EINVAL: invalid snapshot reference: "x\\0y" (contains a NUL byte)'
    check_einval(reference, sb:rollback "x\0y")
    check_einval(reference, sandlot.snapshots.get "x\0y")
    check_einval(reference, sandlot.snapshots.delete "x\0y")
    check_einval('EINVAL: invalid name: "a\\0" (contains a NUL byte)', sandlot.snapshots.list { name = "a\0" })
    check_einval('EINVAL: invalid cursor: "\\0" (contains a NUL byte)', sandlot.snapshots.list { cursor = "\0" })
    check_einval('EINVAL: invalid snapshot: "x\\0y" (contains a NUL byte)', Sandbox.create { snapshot = "x\0y" })
    check_einval('EINVAL: invalid on_fork: "true\\0" (contains a NUL byte)',
      Sandbox.create { snapshot = snap, on_fork = "true\0" })
    check_einval('EINVAL: invalid snapshot: "x\\0y" (contains a NUL byte)',
      Sandbox.create_many { snapshot = "x\0y", count = 2 })
    check_einval(('EINVAL: invalid sandbox id: "%s\\0junk" (contains a NUL byte)'):format(sb.id),
      Sandbox.connect(sb.id .. "\0junk"))
    local none, message, name = Sandbox.create_many { snapshot = snap, count = 65 }
    check_einval("EINVAL: invalid count: 65 (expected 1 to 64)", none, message, name)
    none, message, name = Sandbox.create_many { snapshot = snap, count = 1.5 }
    check_einval("EINVAL: invalid count: 1.5 (expected 1 to 64)", none, message, name)
  end)

  it("rejects fork options it cannot honour", function()
    local function check_einval(start, ok, message, name)
      assert.is_nil(ok)
      assert.are.equal("EINVAL", name)
      assert.are.equal(start, message:sub(1, #start))
    end
    check_einval("EINVAL: create sandbox: invalid backend: vm (snapshot " .. snap.id
      .. " is a process snapshot, ", Sandbox.create { snapshot = snap, backend = "vm" })
    check_einval("EINVAL: create sandbox: env does not apply to a fork of " .. snap.id
      .. ": forks keep the snapshot's environment (pass env to each exec instead)",
      Sandbox.create { snapshot = snap, env = { NEW = "1" } })
    check_einval("EINVAL: create sandbox: cwd does not apply to a fork of " .. snap.id
      .. ": forks keep the snapshot's working directory (pass cwd to each exec instead)",
      Sandbox.create { snapshot = snap, cwd = "/work" })
    check_einval("EINVAL: create 1 of 2: create sandbox: env does not apply to a fork",
      Sandbox.create_many { snapshot = snap, count = 2, env = { NEW = "1" } })
    local none, _, name = Sandbox.create { snapshot = snap, template = "other" }
    assert.is_nil(none)
    assert.are.equal("ENOENT", name)
    assert.are.same({}, assert(Sandbox.list { state = "creating" }))
  end)

  it("applies limits, timeout, hostname and labels to a fork", function()
    local child = assert(Sandbox.create {
      snapshot = snap, memory = "256M", pids = 99, timeout = 600, hostname = "kid",
      labels = { role = "fork" }, auto_kill = true,
    })
    local info = assert(child:info())
    assert.are.equal(256 * 1024 * 1024, info.memory)
    assert.are.equal(99, info.pids)
    assert.are.equal(600, info.timeout)
    assert.is_true(info.auto_kill)
    assert.are.same({ role = "fork" }, child.labels)
    local memory_dir = info.cgroups.memory or info.cgroups.unified
    local limit_file = info.cgroups.memory and "/memory.limit_in_bytes" or "/memory.max"
    assert.are.equal(tostring(256 * 1024 * 1024), sandboxes.read(memory_dir .. limit_file):match "%d+")
    assert.are.equal("kid\n", assert(child:exec "hostname").stdout)
    assert(child:kill())
  end)

  it("gives a fork its source's limits when it sets none", function()
    local source = create { memory = "300M", pids = 150, cpu_shares = 512 }
    local limited = assert(source:snapshot {})
    local child = assert(Sandbox.create { snapshot = limited, auto_kill = true })
    local info = assert(child:info())
    assert.are.equal(300 * 1024 * 1024, info.memory)
    assert.are.equal(150, info.pids)
    assert.are.equal(512, info.cpu_shares)
    local memory_dir = info.cgroups.memory or info.cgroups.unified
    local limit_file = info.cgroups.memory and "/memory.limit_in_bytes" or "/memory.max"
    assert.are.equal(tostring(300 * 1024 * 1024), sandboxes.read(memory_dir .. limit_file):match "%d+")
    local other = assert(Sandbox.create { snapshot = limited, memory = "200M", auto_kill = true })
    assert.are.equal(200 * 1024 * 1024, assert(other:info()).memory)
    assert.are.equal(150, assert(other:info()).pids)
    assert(child:kill())
    assert(other:kill())
    assert(source:kill())
    assert(sandlot.snapshots.delete(limited))
  end)

  it("applies env and cwd to a sandbox from files only", function()
    local fs = assert(sb:snapshot { memory = false })
    local fresh = assert(Sandbox.create { snapshot = fs, env = { NEW = "1" }, cwd = "/work" })
    assert.are.equal("1 /work\n", assert(fresh:exec 'echo "$NEW" "$PWD"').stdout)
    assert(fresh:kill())
    assert(sandlot.snapshots.delete(fs))
  end)

  it("takes the files only with memory = false", function()
    assert(sb:write_file("/kept", "files"))
    local fs = assert(sb:snapshot { memory = false })
    assert.are.equal("fs", fs.kind)
    local fresh = assert(Sandbox.create { snapshot = fs })
    assert.are.equal("files", fresh:read_file "/kept")
    assert.are.same({}, assert(fresh:processes()))
    local none, _, name = Sandbox.create { snapshot = fs, on_fork = "true" }
    assert.is_nil(none)
    assert.are.equal("EINVAL", name)
    assert(fresh:kill())
  end)

  it("runs on_fork in the fork and fails the create on a non-zero exit", function()
    local child = assert(Sandbox.create { snapshot = snap, on_fork = "echo forked > /tmp/mark" })
    assert.are.equal("forked\n", child:read_file "/tmp/mark")
    assert(child:kill())
    local none, message, name = Sandbox.create { snapshot = snap, on_fork = "exit 3" }
    assert.is_nil(none)
    assert.are.equal("EIO", name)
    assert.matches("exit status 3", message)
  end)

  it("rolls back in place", function()
    local total = add(process, 100)
    assert.is_true(total > 100)
    assert(sb:write_file("/after", "later"))
    assert(sb:rollback(snap))
    assert.are.equal("running", sb.state)
    local _, _, name = sb:read_file "/after"
    assert.are.equal("ENOENT", name)
    -- The handle from before the rollback followed a process that went
    -- back in time; a new one continues from the snapshot's memory.
    local _, message
    _, message, name = process:read_line()
    assert.are.equal("ECANCELED", name, message)
    assert.matches("rolled back", message)
    assert.are.equal("failed", process.state)
    -- Writes and signals fail the same way: the process still runs.
    local write_message, write_name = select(2, process:write "1\n")
    assert.are.equal("ECANCELED", write_name)
    assert.are.equal(message, write_message)
    local kill_message, kill_name = select(2, process:kill())
    assert.are.equal("ECANCELED", kill_name)
    assert.are.equal(message, kill_message)
    local close_message, close_name = select(2, process:close_stdin())
    assert.are.equal("ECANCELED", close_name)
    assert.are.equal(message, close_message)
    process = assert(sb:process(process.id))
    assert.are.equal(6, add(process, 1))
    local none
    none, _, name = sb:rollback "no-such-snapshot"
    assert.is_nil(none)
    assert.are.equal("ENOENT", name)
  end)

  it("deletes a snapshot while its forks run", function()
    local child = assert(Sandbox.create { snapshot = snap })
    assert(sandlot.snapshots.delete(snap.id))
    local ok, _, name = sandlot.snapshots.delete(snap.id)
    assert.is_nil(ok)
    assert.are.equal("ENOENT", name)
    ok, _, name = sandlot.snapshots.get "loaded:v1"
    assert.is_nil(ok)
    assert.are.equal("ENOENT", name)
    assert.are.equal(15, add(assert(child:process(process.id)), 10))
    assert(child:kill())
  end)
end)

describe("sandbox:pause", function()
  it("keeps the id and the state in memory, and handles re-attach", function()
    local sb = create { auto_kill = true }
    local process = assert(sb:spawn(adder))
    assert.are.equal(4, add(process, 4))
    assert(sb:write_file("/kept", "yes"))
    local files = assert(sb:snapshot { memory = false })
    assert(sb:pause())
    assert.are.equal("paused", sb.state)
    local paused = "EBUSY: sandbox is paused (resume it first): " .. sb.id
    local _, message, name = sb:exec "true"
    assert.are.equal("EBUSY", name)
    assert.are.equal(paused, message)
    -- Every operation that needs its processes fails the same way.
    for what, call in pairs {
      snapshot = function() return sb:snapshot() end,
      freeze = function() return sb:freeze() end,
      thaw = function() return sb:thaw() end,
      rollback = function() return sb:rollback(files) end,
    } do
      local none
      none, message, name = call()
      assert.is_nil(none, what)
      assert.are.equal("EBUSY", name, what)
      assert.are.equal(paused, message, what)
    end
    assert.are.equal("paused", assert(sb:refresh()).state)
    -- A process handle's request fails at once too, and the handle works
    -- again after the resume.
    _, message, name = process:write "100\n"
    assert.are.equal("EBUSY", name)
    assert.are.equal(paused, message)
    local again = assert(Sandbox.get(sb.id))
    assert.are.equal("paused", again.state)
    assert(sb:resume())
    assert.are.equal("running", sb.state)
    assert.are.equal(9, add(process, 5))
    assert.are.equal("yes", sb:read_file "/kept")
    local list = assert(sb:processes())
    assert.are.equal(1, #list)
    assert.are.equal(process.id, list[1].id)
    assert.are.equal("running", list[1].state)
    assert(sb:kill())
    assert(files:delete())
  end)

  it("fails calls with EBUSY when another process paused it", function()
    local sb = create { auto_kill = true }
    local process = assert(sb:spawn(adder))
    assert.are.equal(1, add(process, 1))
    local code, _, err = support.run_sandlot({ "-e", [[
      assert(assert(require("sandlot").Sandbox.get(arg[1])):pause())
    ]], sb.id }, { env = support.environment { SANDLOT_HOME = home } })
    assert.are.equal(0, code, err)
    -- This object still reads "running": the request fails on the
    -- connection (without a SIGPIPE that ends this host), and the record
    -- shows why.
    local paused = "EBUSY: sandbox is paused (resume it first): " .. sb.id
    local ok, message, name = process:write "2\n"
    assert.is_nil(ok)
    assert.are.equal("EBUSY", name)
    assert.are.equal(paused, message)
    assert.are.equal("paused", sb.state)
    assert(sb:resume())
    assert.are.equal(3, add(assert(sb:process(process.id)), 2))
    assert(sb:kill())
  end)

  it("is resumed by Sandbox.connect", function()
    local sb = create { auto_kill = true }
    local process = assert(sb:spawn(adder))
    assert.are.equal(2, add(process, 2))
    assert(sb:pause())
    local connected = assert(Sandbox.connect(sb.id))
    assert.are.equal("running", connected.state)
    assert.are.equal(sb.id, connected.id)
    assert.are.equal(5, add(process, 3))
    assert(connected:kill())
    local none, _, name = Sandbox.connect(sb.id)
    assert.is_nil(none)
    assert.are.equal("ESRCH", name)
  end)

  it("keeps only the files with memory = false", function()
    local sb = create { auto_kill = true }
    assert(sb:spawn "sleep 1000")
    assert(sb:write_file("/kept", "files"))
    assert(sb:pause { memory = false })
    assert(sb:resume())
    assert.are.equal("files", sb:read_file "/kept")
    assert.are.same({}, assert(sb:processes()))
    assert(sb:kill())
  end)

  for _, action in ipairs { "pause", "pause_fs" } do
    it("happens on a timeout with on_timeout = " .. action, function()
      local sb = create { auto_kill = true, timeout = 1, on_timeout = action }
      assert(sb:spawn "sleep 1000")
      sandboxes.eventually(function()
        return assert(sb:refresh()).state == "paused"
      end, "the timeout pauses the sandbox", 20)
      assert(sb:set_timeout(0))
      local again = assert(Sandbox.connect(sb.id))
      assert.are.equal("running", again.state)
      assert.are.equal(action == "pause" and 1 or 0, #assert(again:processes()))
      assert(again:kill())
    end)
  end
end)

describe("sandlot.snapshots.list", function()
  local a, b

  -- 150 snapshots of sandbox a named "a" (tags t1 ... t150) and 100 of b
  -- named "b"; files only, so each takes a few milliseconds.
  setup(function()
    a = create { auto_kill = true }
    b = create { auto_kill = true }
    for i = 1, 150 do
      assert(a:snapshot { name = "a", tag = "t" .. i, memory = false })
    end
    for i = 1, 100 do
      assert(b:snapshot { name = "b", tag = "t" .. i, memory = false })
    end
  end)

  it("pages through a sandbox's snapshots, newest first", function()
    local seen, pages = {}, 0
    local page = assert(sandlot.snapshots.list { sandbox = a.id, limit = 20 })
    local previous
    while page do
      pages = pages + 1
      assert.is_true(#page.items <= 20)
      for _, snap in ipairs(page.items) do
        assert.are.equal(a.id, snap.sandbox_id)
        assert.is_nil(seen[snap.id])
        seen[snap.id] = true
        if previous then
          assert.is_true(previous.created_at >= snap.created_at)
        end
        previous = snap
      end
      assert.are.equal(page.has_next, page.cursor ~= nil)
      page = page:next()
    end
    assert.are.equal(8, pages)
    local count = 0
    for _ in pairs(seen) do
      count = count + 1
    end
    assert.are.equal(150, count)
    local newest = assert(sandlot.snapshots.list { sandbox = a, limit = 1 })
    assert.are.equal("t150", newest.items[1].tag)
    assert.is_true(newest.has_next)
  end)

  it("filters by name, name:tag and sandbox", function()
    local count = 0
    for snap in sandlot.snapshots.each { name = "b", limit = 30 } do
      assert.are.equal("b", snap.name)
      count = count + 1
    end
    assert.are.equal(100, count)
    local page = assert(sandlot.snapshots.list { name = "a:t7" })
    assert.are.equal(1, #page.items)
    assert.are.equal("t7", page.items[1].tag)
    page = assert(sandlot.snapshots.list { sandbox = a, name = "b" })
    assert.are.equal(0, #page.items)
    assert.is_false(page.has_next)
    page = assert(sandlot.snapshots.list { name = "no-such-name" })
    assert.are.equal(0, #page.items)
    page = assert(sandlot.snapshots.list { sandbox = "sb-000000000000" })
    assert.are.equal(0, #page.items)
    local got = assert(sandlot.snapshots.get "a:t3")
    assert.are.equal("t3", got.tag)
  end)

  it("rejects bad filters", function()
    local none, _, name = sandlot.snapshots.list { limit = 0 }
    assert.is_nil(none)
    assert.are.equal("EINVAL", name)
    none, _, name = sandlot.snapshots.list { cursor = "bogus" }
    assert.is_nil(none)
    assert.are.equal("EINVAL", name)
    assert.has_error(function()
      sandlot.snapshots.list { sandbox = 3 }
    end)
    assert.has_error(function()
      for _ in sandlot.snapshots.each { limit = 0 } do
      end
    end)
  end)

  it("keeps the snapshots of a deleted sandbox", function()
    assert(b:kill())
    assert(b:delete())
    local page = assert(sandlot.snapshots.list { sandbox = b.id, limit = 1000 })
    assert.are.equal(100, #page.items)
    for snap in sandlot.snapshots.each { sandbox = b.id } do
      assert(snap:delete())
    end
    page = assert(sandlot.snapshots.list { sandbox = b.id })
    assert.are.equal(0, #page.items)
  end)
end)
