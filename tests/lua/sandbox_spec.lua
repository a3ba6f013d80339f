-- Sandbox objects against real process sandboxes (root, namespaces,
-- cgroups, the base template): create, exec, freeze, thaw, timeouts,
-- kill, and the failure cases with their error names.
local sandboxes = require "sandboxes"
sandboxes.require_sandboxes()

local sandlot = require "sandlot"
local support = require "support"
local uv = require "luv"
local Sandbox = sandlot.Sandbox

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

local function entries(dir)
  local names = {}
  local scan = uv.fs_scandir(dir)
  while scan do
    local name = uv.fs_scandir_next(scan)
    if name == nil then
      break
    end
    names[#names + 1] = name
  end
  return names
end

describe("Sandbox.create", function()
  it("creates, runs a command and kills", function()
    local sb = create {}
    assert.matches("^sb%-%x+$", sb.id)
    assert.are.equal("running", sb.state)
    assert.are.equal("base", sb.template)
    assert.are.equal("process", sb.backend)
    assert.is_true(sb.created_at > 0)
    assert.matches("^sandlot.Sandbox %(sb%-%x+, running%)$", tostring(sb))
    local r = assert(sb:exec "echo hello; echo oops >&2; exit 3")
    assert.are.equal("hello\n", r.stdout)
    assert.are.equal("oops\n", r.stderr)
    assert.are.equal(3, r.exit_code)
    assert.is_nil(r.signal)
    assert.is_false(r.timed_out)
    assert.is_true(r.duration > 0)
    local info = assert(sb:info())
    assert.is_true(sb:kill())
    assert.are.equal("dead", sb.state)
    assert.is_nil(sandboxes.wait_clean(home, info))
    assert.are.equal("killed", assert(sb:info()).end_reason)
  end)

  it("deletes the record of an ended sandbox", function()
    local sb = create {}
    local ok, message, name = sb:delete()
    assert.is_nil(ok)
    assert.are.equal("EBUSY", name, message)
    assert(sb:kill())
    assert.is_true(sb:delete())
    local _, _, get_name = Sandbox.get(sb.id)
    assert.are.equal("ENOENT", get_name)
    assert.is_nil(uv.fs_stat(home .. "/sandboxes/" .. sb.id))
  end)

  it("runs python with exact output", function()
    local sb = create {}
    local r = assert(sb:exec [[python3 -c 'import sys; print("hello from python", 6 * 7); sys.stdout.write("\u00e9\n"); print("to stderr", file=sys.stderr)']])
    assert.are.equal("hello from python 42\n\xc3\xa9\n", r.stdout)
    assert.are.equal("to stderr\n", r.stderr)
    assert.are.equal(0, r.exit_code)
    assert(sb:kill())
  end)

  it("applies limits, env, a new cwd, hostname and labels", function()
    local sb = create {
      memory = "256M", pids = 128, env = { GREETING = "hi there", LANG = "C.UTF-8", COUNT = 3 },
      cwd = "/work/deep", hostname = "box1", labels = { team = "a", run = 7 },
    }
    local r = assert(sb:exec('hostname; echo "$GREETING"; echo "$LANG"; pwd; echo "$COUNT $RATIO"',
      { env = { RATIO = 1.5 } }))
    -- Numbers in env and labels become their text, as tostring() writes it.
    assert.are.equal("box1\nhi there\nC.UTF-8\n/work/deep\n3 1.5\n", r.stdout)
    local info = assert(sb:info())
    assert.are.equal(256 * 1024 * 1024, info.memory)
    assert.are.equal(128, info.pids)
    assert.are.same({ team = "a", run = "7" }, sb.labels)
    assert(sb:kill())
  end)

  it("writes its host name to /etc/hostname", function()
    local named = create { hostname = "box2" }
    assert.are.equal("box2\n", named:read_file "/etc/hostname")
    assert.are.equal(tonumber("644", 8), assert(named:stat "/etc/hostname").mode)
    assert.are.equal("box2\n", assert(named:exec "hostname").stdout)
    local plain = create {}
    assert.are.equal("sandlot\n", plain:read_file "/etc/hostname")
    assert.are.equal("sandlot\n", assert(plain:exec "hostname").stdout)
    assert.are.equal("sandlot\n", assert(plain:exec "cat /etc/hostname").stdout)
    assert(named:kill())
    assert(plain:kill())
  end)

  it("creates five sandboxes at once in parallel tasks", function()
    local started, finished = {}, {}
    local tasks = {}
    for i = 1, 5 do
      tasks[i] = sandlot.spawn(function()
        started[i] = uv.hrtime()
        local sb = create { labels = { batch = "five" } }
        finished[i] = uv.hrtime()
        return sb
      end)
    end
    local list = assert(sandlot.wait_all(tasks))
    -- Every create began before the first one returned: they overlapped.
    local first_end = math.min(table.unpack(finished))
    for i = 1, 5 do
      assert.is_true(started[i] < first_end)
    end
    local ids = {}
    for _, sb in ipairs(list) do
      ids[sb.id] = true
      assert.are.equal("42\n", assert(sb:exec "echo $((6 * 7))").stdout)
    end
    assert.are.equal(5, #assert(Sandbox.list { label = "batch=five" }))
    local count = 0
    for _ in pairs(ids) do
      count = count + 1
    end
    assert.are.equal(5, count)
    for _, sb in ipairs(list) do
      assert(sb:kill())
    end
  end)
end)

describe("sandbox:exec", function()
  local sb

  setup(function()
    sb = create { env = { FROM_SANDBOX = "yes" } }
  end)

  teardown(function()
    if sb then
      sb:kill()
    end
  end)

  it("runs a list as argv without a shell", function()
    local r = assert(sb:exec { "printf", "%s|", "a b", "$HOME", "*" })
    assert.are.equal("a b|$HOME|*|", r.stdout)
    r = assert(sb:exec 'printf "%s|" "a b" "$HOME"')
    assert.are.equal("a b|/root|", r.stdout)
  end)

  it("takes options as a second argument or as named fields", function()
    local r = assert(sb:exec({ "sh", "-c", 'echo "$X $FROM_SANDBOX"; pwd' }, { env = { X = "1" }, cwd = "/etc" }))
    assert.are.equal("1 yes\n/etc\n", r.stdout)
    r = assert(sb:exec { "pwd", cwd = "/usr" })
    assert.are.equal("/usr\n", r.stdout)
  end)

  it("passes stdin bytes", function()
    local data = {}
    for i = 0, 255 do
      data[#data + 1] = string.char(i)
    end
    data = table.concat(data):rep(64)
    local r = assert(sb:exec({ "cat" }, { stdin = data }))
    assert.are.equal(data, r.stdout)
  end)

  it("reports signals and timeouts", function()
    local r = assert(sb:exec "kill -TERM $$")
    assert.are.equal(15, r.signal)
    assert.are.equal(128 + 15, r.exit_code)
    r = assert(sb:exec("sleep 30", { timeout = 0.3 }))
    assert.is_true(r.timed_out)
    assert.are.equal(9, r.signal)
  end)

  it("returns ENOENT for a missing program", function()
    local r, message, name = sb:exec { "no-such-program", "x" }
    assert.is_nil(r)
    assert.are.equal("ENOENT: program not found: no-such-program", message)
    assert.are.equal("ENOENT", name)
    r = assert(sb:exec "no-such-program")
    assert.are.equal(127, r.exit_code)
  end)

  it("streams output to callbacks in order", function()
    local out, err = {}, {}
    local r = assert(sb:exec(
      "for i in $(seq 1 50); do echo line $i; echo err $i >&2; sleep 0.01; done",
      { on_stdout = function(chunk) out[#out + 1] = chunk end,
        on_stderr = function(chunk) err[#err + 1] = chunk end, capture = true }))
    local expected_out, expected_err = {}, {}
    for i = 1, 50 do
      expected_out[i] = "line " .. i .. "\n"
      expected_err[i] = "err " .. i .. "\n"
    end
    assert.is_true(#out > 1)
    assert.are.equal(table.concat(expected_out), table.concat(out))
    assert.are.equal(table.concat(expected_err), table.concat(err))
    assert.are.equal(table.concat(expected_out), r.stdout)
  end)

  it("fails only the task of a raising callback", function()
    local failing = sandlot.spawn(function()
      return sb:exec("echo one; sleep 30", { on_stdout = function() error("callback broke") end })
    end)
    local other = sandlot.spawn(function()
      return assert(sb:exec "sleep 0.2; echo other").stdout
    end)
    local value, message = failing:wait()
    assert.is_nil(value)
    assert.matches("callback broke", message)
    assert.are.equal("failed", failing.status)
    assert.are.equal("other\n", other:wait())
    -- The killed process is gone from the agent's list.
    sandboxes.eventually(function()
      for _, p in ipairs(assert(sb:processes())) do
        if p.command:find("sleep 30", 1, true) then
          return false
        end
      end
      return true
    end, "the callback's process ended")
  end)

  it("keeps at most max_output bytes of each stream", function()
    local r = assert(sb:exec("yes", { timeout = 1 }))
    assert.is_true(r.timed_out)
    assert.are.equal(16 * 1024 * 1024, #r.stdout)
    assert.is_true(r.stdout_truncated)
    assert.is_false(r.stderr_truncated)
    r = assert(sb:exec("head -c 5000 /dev/zero; echo err >&2", { max_output = 1000 }))
    assert.are.equal(("\0"):rep(1000), r.stdout)
    assert.is_true(r.stdout_truncated)
    assert.are.equal("err\n", r.stderr)
    assert.is_false(r.stderr_truncated)
    r = assert(sb:exec("head -c 20000000 /dev/zero", { max_output = math.huge }))
    assert.are.equal(20000000, #r.stdout)
    assert.is_false(r.stdout_truncated)
    local _, message, name = sb:exec("true", { max_output = 0 })
    assert.are.equal("EINVAL", name)
    assert.are.equal("EINVAL: invalid max_output: 0 (expected bytes > 0, or math.huge for no limit)", message)
    assert.has_error(function() sb:spawn("true", { max_output = 10 }) end)
  end)

  it("keeps no streamed output unless asked", function()
    local seen = 0
    local r = assert(sb:exec("head -c 30000000 /dev/zero; echo done >&2",
      { on_stdout = function(chunk) seen = seen + #chunk end }))
    assert.are.equal(30000000, seen)
    assert.is_nil(r.stdout)
    assert.is_false(r.stdout_truncated)
    assert.are.equal("done\n", r.stderr)
    r = assert(sb:exec("echo kept", { on_stdout = function() end, capture = true }))
    assert.are.equal("kept\n", r.stdout)
  end)

  it("rejects bad options", function()
    assert.has_error(function() sb:exec(42) end)
    assert.has_error(function() sb:exec({}) end)
    assert.has_error(function() sb:exec("true", { timout = 1 }) end)
    assert.has_error(function() sb:exec("true", { timeout = "1" }) end)
    assert.has_error(function() sb:exec { "echo", 1 } end)
    local r, message, name = sb:exec("true", { timeout = -1 })
    assert.is_nil(r)
    assert.are.equal("EINVAL", name)
    assert.matches("invalid timeout", message)
  end)
end)

describe("values C cannot carry", function()
  local sb

  setup(function()
    sb = create {}
  end)

  teardown(function()
    if sb then
      sb:kill()
    end
  end)

  local function check_einval(expected, ok, message, name)
    assert.is_nil(ok)
    assert.are.equal("EINVAL", name)
    assert.are.equal(expected, message)
  end

  it("exec rejects NUL bytes and = in names", function()
    check_einval('EINVAL: invalid command: "echo a\\0b" (contains a NUL byte)', sb:exec "echo a\0b")
    check_einval('EINVAL: invalid argv[2]: "a\\0b" (contains a NUL byte)', sb:exec { "echo", "a\0b" })
    check_einval('EINVAL: invalid value of environment variable A: "x\\0y" (contains a NUL byte)',
      sb:exec("echo $A", { env = { A = "x\0y" } }))
    check_einval('EINVAL: invalid environment variable name: B=C (expected a name without "=")',
      sb:exec("env", { env = { ["B=C"] = "d" } }))
    check_einval('EINVAL: invalid cwd: "/tmp\\0x" (contains a NUL byte)', sb:exec("pwd", { cwd = "/tmp\0x" }))
  end)

  it("create rejects NUL bytes and = in names", function()
    local before = #assert(Sandbox.list())
    check_einval('EINVAL: invalid environment variable name: B=C (expected a name without "=")',
      Sandbox.create { env = { ["B=C"] = "d" } })
    check_einval('EINVAL: invalid label name: k=v (expected a name without "=")',
      Sandbox.create { labels = { ["k=v"] = "w" } })
    check_einval('EINVAL: invalid value of label k: "v\\0w" (contains a NUL byte)',
      Sandbox.create { labels = { k = "v\0w" } })
    check_einval('EINVAL: invalid hostname: "a\\0b" (contains a NUL byte)', Sandbox.create { hostname = "a\0b" })
    check_einval('EINVAL: invalid template: "base\\0x" (contains a NUL byte)',
      Sandbox.create { template = "base\0x" })
    local _, message, name = Sandbox.get(sb.id .. "\0junk")
    assert.are.equal("EINVAL", name)
    assert.matches("contains a NUL byte", message, 1, true)
    -- The rejected calls created nothing.
    assert.are.equal(before, #assert(Sandbox.list()))
  end)
end)

describe("to-be-closed sandboxes", function()
  local function ended(id)
    local sb = Sandbox.get(id)
    return sb ~= nil and sb.state == "dead"
  end

  it("kill the sandbox at the end of the scope", function()
    local id, info
    do
      local sb <close> = create {}
      id = sb.id
      info = assert(sb:info())
      assert.are.equal("running", sb.state)
    end
    local sb = assert(Sandbox.get(id))
    assert.are.equal("dead", sb.state)
    assert.are.equal("killed", assert(sb:info()).end_reason)
    assert.is_nil(sandboxes.wait_clean(home, info))
  end)

  it("kill it when the task fails or a pcall unwinds", function()
    local id
    local task = sandlot.spawn(function()
      local sb <close> = create {}
      id = sb.id
      error("the task breaks")
    end)
    assert.is_nil(task:wait())
    sandboxes.eventually(function() return ended(id) end, "the failed task's sandbox ends")
    local ok = pcall(function()
      local sb <close> = create {}
      id = sb.id
      error("unwinding")
    end)
    assert.is_false(ok)
    sandboxes.eventually(function() return ended(id) end, "the unwound sandbox ends")
  end)

  it("leave an ended sandbox alone", function()
    local sb = create {}
    assert(sb:kill())
    do
      local closing <close> = sb
      assert.are.equal("dead", closing.state)
    end
    assert.are.equal("killed", assert(sb:info()).end_reason)
  end)
end)

describe("freeze and thaw", function()
  it("stop and resume progress", function()
    local sb = create {}
    local counter = "i=0; while :; do i=$((i+1)); echo $i > /c.tmp; mv /c.tmp /counter; sleep 0.02; done"
    local p = assert(sb:spawn { "sh", "-c", counter })
    local path = assert(sb:info()).root .. "/counter"
    local function value()
      return tonumber(sandboxes.read(path) or "0") or 0
    end
    sandboxes.eventually(function() return value() >= 3 end, "the counter counts")
    assert.is_true(sb:freeze())
    assert.are.equal("frozen", sb.state)
    assert.are.equal("frozen", assert(Sandbox.get(sb.id)).state)
    local frozen_at = value()
    sandlot.sleep(300)
    assert.are.equal(frozen_at, value())
    assert.is_true(sb:freeze()) -- freezing twice changes nothing
    assert.is_true(sb:thaw())
    assert.are.equal("running", sb.state)
    sandboxes.eventually(function() return value() > frozen_at + 2 end, "the counter counts again")
    p:close()
    assert(sb:kill())
  end)

  it("make agent calls fail at once with EBUSY", function()
    local sb = create {}
    local stale = assert(Sandbox.get(sb.id))
    local p = assert(sb:spawn { "cat" })
    assert(sb:freeze())
    local calls = {
      function() return p:write "x" end,
      function() return p:kill() end,
      function() return sb:exec("true", { timeout = 2 }) end,
      function() return sb:spawn "true" end,
      function() return sb:read_file "/etc/hostname" end,
      function() return sb:write_file("/tmp/x", "y") end,
      function() return sb:stat "/" end,
      function() return sb:processes() end,
      -- An object that still reads "running" finds the freezer frozen.
      function() return stale:exec "true" end,
    }
    for i, call in ipairs(calls) do
      local ok, message, name = call()
      assert.is_nil(ok, "call " .. i)
      assert.are.equal("EBUSY", name, "call " .. i)
      assert.are.equal("EBUSY: sandbox is frozen: " .. sb.id, message)
    end
    local code, out, err = support.run_sandlot({ "-e", [[
      local sb = assert(require("sandlot").Sandbox.get(arg[1]))
      print(sb:exec("true", { timeout = 2 }))
    ]], sb.id }, { env = support.environment { SANDLOT_HOME = home } })
    assert.are.equal(0, code, err)
    assert.are.equal("nil\tEBUSY: sandbox is frozen: " .. sb.id .. "\tEBUSY\n", out)
    assert(sb:thaw())
    assert.are.equal("ok\n", assert(stale:exec "echo ok").stdout)
    assert.is_true(p:write "y\n")
    assert.are.equal("y", p:read_line())
    assert(sb:kill())
  end)

  it("turn an unanswered exec timeout into ETIMEDOUT", function()
    local sb = create {}
    local info = assert(sb:info())
    -- Freeze behind sandlot's back, as a snapshot does for a moment: the
    -- record says running, so the request goes out and gets no answer.
    local freezer = info.cgroups.freezer and info.cgroups.freezer .. "/freezer.state"
      or info.cgroups.unified .. "/cgroup.freeze"
    local function set_freezer(value)
      local file = assert(io.open(freezer, "w"))
      file:write(value)
      file:close()
    end
    set_freezer(info.cgroups.freezer and "FROZEN" or "1")
    local ok, message, name = sb:exec({ "sleep", "30" }, { timeout = 0.5 })
    set_freezer(info.cgroups.freezer and "THAWED" or "0")
    assert.is_nil(ok)
    assert.are.equal("ETIMEDOUT", name)
    assert.are.equal("ETIMEDOUT: the agent reported no exit within 3.5 s (is the sandbox frozen?): sleep 30",
      message)
    -- The request reached the agent after the thaw; its process was killed.
    sandboxes.eventually(function()
      for _, p in ipairs(assert(sb:processes())) do
        if p.command == "sleep 30" and p.state == "running" then
          return false
        end
      end
      return true
    end, "the late exec is killed")
    assert(sb:kill())
  end)
end)

describe("timeouts", function()
  it("kill the sandbox when they expire", function()
    local sb = create { timeout = 1 }
    local info = assert(sb:info())
    assert.is_true(info.deadline > info.created_at)
    sandboxes.eventually(function() return assert(sb:refresh()).state == "dead" end, "the timeout", 15)
    assert.are.equal("timeout", assert(sb:info()).end_reason)
    assert.is_nil(sandboxes.wait_clean(home, info))
  end)

  it("can be set later", function()
    local sb = create {}
    assert.is_true(sb:set_timeout(1))
    sandboxes.eventually(function() return assert(sb:refresh()).state == "dead" end, "the timeout", 15)
    local r, message, name = sb:set_timeout(5)
    assert.is_nil(r)
    assert.are.equal("ESRCH", name)
    assert.matches("sandbox has ended", message)
  end)
end)

describe("failures", function()
  local function count_rows()
    return #assert(Sandbox.list())
  end

  local function assert_fail(name, pattern, ok, message, errname)
    assert.is_nil(ok)
    assert.are.equal(name, errname)
    assert.matches(pattern, message)
    assert.are.equal(name, message:match "^(E%u+):")
  end

  it("reject an unknown template and bad values with nothing left", function()
    local before = count_rows()
    local folders = #entries(home .. "/sandboxes")
    assert_fail("ENOENT", "template not found: nope", Sandbox.create { template = "nope" })
    assert_fail("EINVAL", "invalid size: \"lots\"", Sandbox.create { memory = "lots" })
    assert_fail("EINVAL", "minimum 16M", Sandbox.create { memory = "1K" })
    assert_fail("EINVAL", "invalid memory limit", Sandbox.create { memory = 0 })
    assert_fail("EINVAL", "invalid pids", Sandbox.create { pids = -1 })
    assert_fail("EINVAL", "invalid pids", Sandbox.create { pids = 1.5 })
    assert_fail("EINVAL", "invalid timeout", Sandbox.create { timeout = -1 })
    assert_fail("EINVAL", "invalid timeout action", Sandbox.create { on_timeout = "explode" })
    assert_fail("EINVAL", "invalid cwd", Sandbox.create { cwd = "relative" })
    assert_fail("EINVAL", "invalid hostname", Sandbox.create { hostname = "bad host" })
    assert_fail("EINVAL", "invalid label", Sandbox.create { labels = { ["bad key"] = "x" } })
    assert.are.equal(before, count_rows())
    assert.are.equal(folders, #entries(home .. "/sandboxes"))
  end)

  it("state limits that match the value", function()
    local function expect(message, ok, actual, name)
      assert.is_nil(ok)
      assert.are.equal("EINVAL", name)
      assert.are.equal(message, actual)
    end
    expect("EINVAL: invalid memory limit: 18446744073709551616 (too large: at most 9223372036854775807 bytes)",
      Sandbox.create { memory = 2.0 ^ 64 })
    expect('EINVAL: invalid memory limit: 1.5 (expected whole bytes > 0, or a size such as "512M")',
      Sandbox.create { memory = 1.5 })
    expect("EINVAL: invalid timeout: 4611686018427387904 (expected whole seconds from 0 to 3153600000)",
      Sandbox.create { timeout = 2.0 ^ 62 })
    expect("EINVAL: invalid timeout: 10000000000000 (expected whole seconds from 0 to 3153600000)",
      Sandbox.create { timeout = 10 ^ 13 })
    expect('EINVAL: create sandbox: invalid size: "1.5G" (expected a whole number and a unit, such as 1536M '
      .. "for 1.5G)", Sandbox.create { memory = "1.5G" })
    expect('EINVAL: create sandbox: invalid size: "100000000T" (too large: at most 18446744073709551615 '
      .. "bytes)", Sandbox.create { memory = "100000000T" })
    expect('EINVAL: create sandbox: invalid memory limit: "9000000T" (too large: at most '
      .. "9223372036854775807 bytes)", Sandbox.create { memory = "9000000T" })
    for _, pids in ipairs { 0, -3, 4194305 } do
      expect(("EINVAL: invalid pids limit: %d (expected a whole number from 1 to 4194304)"):format(pids),
        Sandbox.create { pids = pids })
    end
    expect("EINVAL: invalid pids limit: 1.5 (expected a whole number from 1 to 4194304)",
      Sandbox.create { pids = 1.5 })
    expect("EINVAL: invalid cpu_shares: 0 (expected a whole number from 2 to 262144)",
      Sandbox.create { cpu_shares = 0 })
    expect("EINVAL: invalid cpus: 2000 (expected 0.01 to 1024, or 0 for no quota)",
      Sandbox.create { cpus = 2000 })
    local none, message, name = Sandbox.create { cpus = 0 / 0 }
    assert.is_nil(none)
    assert.are.equal("EINVAL", name)
    assert.matches("^EINVAL: invalid cpus: %-?nan %(expected 0%.01 to 1024, or 0 for no quota%)$", message)
    local sb = create {}
    expect("EINVAL: invalid timeout: 1e+300 (expected seconds > 0, at most 1000000000)",
      sb:exec("true", { timeout = 1e300 }))
    expect("EINVAL: invalid timeout: 0 (expected seconds > 0, at most 1000000000)",
      sb:exec("true", { timeout = 0 }))
    none, message, name = sb:exec("true", { timeout = 0 / 0 })
    assert.is_nil(none)
    assert.are.equal("EINVAL", name)
    assert.matches("^EINVAL: invalid timeout: %-?nan %(expected seconds > 0, at most 1000000000%)$", message)
    expect("EINVAL: invalid timeout: 10000000000000 (expected whole seconds from 0 to 3153600000)",
      sb:set_timeout(10 ^ 13))
    -- The maximum is the same for create, set_timeout and the monitor.
    assert.is_true(sb:set_timeout(3153600000))
    assert.is_true(sb:set_timeout(0))
    -- on_timeout belongs to create: a second argument is not dropped.
    local ok, raised = pcall(sb.set_timeout, sb, 1, "pause")
    assert.is_false(ok)
    assert.matches("takes one argument", raised)
    local p = assert(sb:spawn { "sleep", "30" })
    expect('EINVAL: invalid signal number: 999 (expected 1 to 64, or a name such as "TERM")', p:kill(999))
    expect('EINVAL: unknown signal name: FOO (expected a name such as "TERM" or a number)', p:kill "FOO")
    assert(sb:kill())
  end)

  it("quote an empty template name", function()
    local ok, message, name = Sandbox.create { template = "" }
    assert.is_nil(ok)
    assert.are.equal("ENOENT", name)
    assert.are.equal('ENOENT: create sandbox: template not found: ""', message)
  end)

  it("name an ended sandbox once", function()
    local sb = create {}
    assert(sb:kill())
    for _, call in ipairs { sb.kill, sb.freeze, sb.thaw } do
      local ok, message, name = call(sb)
      assert.is_nil(ok)
      assert.are.equal("ESRCH", name)
      assert.are.equal("ESRCH: sandbox has ended (killed): " .. sb.id, message)
    end
  end)

  it("clean up a create that fails inside the new sandbox", function()
    local before = count_rows()
    local folders = #entries(home .. "/sandboxes")
    -- PID 1 cannot create a working directory below a file.
    assert_fail("ENOTDIR", "/etc/hostname/dir", Sandbox.create { cwd = "/etc/hostname/dir" })
    assert.are.equal(before, count_rows())
    assert.are.equal(folders, #entries(home .. "/sandboxes"))
    for line in sandboxes.read("/proc/self/mountinfo"):gmatch "[^\n]+" do
      assert.is_nil(line:find(home .. "/sandboxes/", 1, true), line)
    end
    sandboxes.eventually(function()
      return #sandboxes.pids_with("sandlot-monitor", home) == #assert(Sandbox.list { state = "running" })
    end, "no monitor without a running sandbox")
  end)

  it("raise on option types and unknown options", function()
    assert.has_error(function() Sandbox.create { memory = {} } end)
    assert.has_error(function() Sandbox.create { timeout = "10" } end)
    assert.has_error(function() Sandbox.create { memroy = "1G" } end)
    assert.has_error(function() Sandbox.create { env = { X = {} } } end)
    assert.has_error(function() Sandbox.create "base" end)
    assert.has_error(function() Sandbox.get(42) end)
    assert.has_error(function() Sandbox.list { state = 1 } end)
  end)

  it("return ENOENT for unknown ids", function()
    assert_fail("ENOENT", "sandbox not found: sb%-000000000000", Sandbox.get "sb-000000000000")
    assert_fail("ENOENT", "sandbox not found", Sandbox.get "../../etc")
  end)

  it("return ESRCH for every call on a killed sandbox", function()
    local sb = create {}
    local stale = assert(Sandbox.get(sb.id))
    assert(sb:kill())
    local calls = {
      function() return sb:exec "true" end,
      function() return sb:spawn { "true" } end,
      function() return sb:write_file("/x", "y") end,
      function() return sb:read_file "/etc/hostname" end,
      function() return sb:list "/" end,
      function() return sb:stat "/" end,
      function() return sb:processes() end,
      function() return sb:freeze() end,
      function() return sb:thaw() end,
      function() return sb:kill() end,
      function() return sb:set_timeout(3) end,
      -- A second object still reads "running" until a call fails.
      function() return stale:exec "true" end,
      function() return stale:read_file "/etc/hostname" end,
    }
    for i, call in ipairs(calls) do
      local ok, message, name = call()
      assert.is_nil(ok, "call " .. i)
      assert.are.equal("ESRCH", name, "call " .. i .. ": " .. tostring(message))
    end
    assert.are.equal("dead", stale.state)
  end)

  it("report a sandbox whose PID 1 died as ended", function()
    local sb = create {}
    local info = assert(sb:info())
    assert(uv.kill(info.init_pid, "sigkill") == 0)
    sandboxes.eventually(function()
      local other = assert(Sandbox.get(sb.id))
      return other.state == "dead"
    end, "the monitor records the death")
    local ok, message, name = sb:exec "true"
    assert.is_nil(ok)
    assert.are.equal("ESRCH", name)
    assert.matches("sandbox has ended", message)
    local ended = assert(sb:info())
    assert.are.equal("dead", ended.state)
    assert.are.equal(9, ended.exit_signal)
    assert.is_nil(sandboxes.wait_clean(home, info))
  end)

  it("raise for suspending calls outside a task", function()
    local sb = create {}
    local ok, err = pcall(coroutine.wrap(function() return Sandbox.create {} end))
    assert.is_false(ok)
    assert.matches("Sandbox.create: cannot suspend in a coroutine that is not a sandlot task", err)
    ok, err = pcall(coroutine.wrap(function() return sb:exec "true" end))
    assert.is_false(ok)
    assert.matches("sandbox:exec: cannot suspend", err)
    ok, err = pcall(coroutine.wrap(function() return sb:read_file "/etc/hostname" end))
    assert.is_false(ok)
    assert.matches("sandbox:read_file: cannot suspend", err)
    local from_callback
    sandlot.await(function(done)
      local timer = uv.new_timer()
      timer:start(0, 0, function()
        timer:close()
        from_callback = select(2, pcall(sb.kill, sb))
        done()
      end)
    end)
    assert.matches("cannot suspend outside a task", from_callback)
    assert.matches("^sandbox_spec%.lua:%d+: sandbox:kill: cannot suspend", from_callback)
    local create_error
    sandlot.await(function(done)
      local timer = uv.new_timer()
      timer:start(0, 0, function()
        timer:close()
        create_error = select(2, pcall(function() return Sandbox.create {} end))
        done()
      end)
    end)
    assert.matches("^sandbox_spec%.lua:%d+: Sandbox.create: cannot suspend outside a task", create_error)
    local ok_type, type_error = pcall(function() return Sandbox.create { memroy = "1G" } end)
    assert.is_false(ok_type)
    assert.matches('^sandbox_spec%.lua:%d+: Sandbox.create: unknown option "memroy"$', type_error)
    assert.are.equal("running", assert(sb:refresh()).state)
    assert(sb:kill())
  end)
end)

describe("Sandbox.list", function()
  it("filters by state and label", function()
    local a = create { labels = { team = "red" } }
    local b = create { labels = { team = "blue", tier = "2" } }
    assert(b:freeze())
    local ids = function(list)
      local set = {}
      for _, sb in ipairs(list) do
        set[sb.id] = sb.state
      end
      return set
    end
    assert.are.same({ [a.id] = "running" }, ids(assert(Sandbox.list { label = "team=red" })))
    assert.are.same({ [b.id] = "frozen" }, ids(assert(Sandbox.list { label = { team = "blue", tier = 2 } })))
    assert.are.equal("frozen", ids(assert(Sandbox.list { state = "frozen" }))[b.id])
    assert.is_nil(ids(assert(Sandbox.list { state = "running" }))[b.id])
    local _, _, name = Sandbox.list { label = "no-equals-sign" }
    assert.are.equal("EINVAL", name)
    assert(a:kill())
    assert(b:kill())
    assert.is_nil(ids(assert(Sandbox.list { state = "running" }))[a.id])
    assert.are.equal("dead", ids(assert(Sandbox.list()))[a.id])
  end)

  it("rejects a state or backend that does not exist", function()
    local none, message, name = Sandbox.list { state = "bogus" }
    assert.is_nil(none)
    assert.are.equal("EINVAL", name)
    assert.are.equal('EINVAL: invalid state: "bogus" (expected one of: creating, running, frozen, '
      .. "paused, dead)", message)
    none, message, name = Sandbox.list { backend = "bogus" }
    assert.is_nil(none)
    assert.are.equal("EINVAL", name)
    assert.are.equal('EINVAL: invalid backend: "bogus" (expected one of: process, vm)', message)
    none, message = Sandbox.list { state = "runing\0" }
    assert.is_nil(none)
    assert.are.equal('EINVAL: invalid state: "runing\\0" (expected one of: creating, running, '
      .. "frozen, paused, dead)", message)
    assert(Sandbox.list { state = "dead", backend = "vm" })
  end)
end)
