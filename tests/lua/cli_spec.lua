-- The sandlot program's command line, run as a child process.
local sandlot = require "sandlot"
local support = require "support"
local run = support.run_sandlot

describe("sandlot -e", function()
  it("runs the chunk with its arguments", function()
    local code, out = run { "-e", "print(arg[0], ...)", "a", "b" }
    assert.are.equal(0, code)
    assert.are.equal("-e\ta\tb\n", out)
  end)

  it("exits 1 with the traceback when the chunk raises", function()
    local code, out, err = run { "-e", "print('before') error('boom')" }
    assert.are.equal(1, code)
    assert.are.equal("before\n", out)
    assert.matches("^sandlot: %(command line%):1: boom\nstack traceback:\n", err)
  end)

  it("exits 1 on a syntax error", function()
    local code, _, err = run { "-e", "x = = 1" }
    assert.are.equal(1, code)
    assert.matches("^sandlot: %(command line%):1: unexpected symbol", err)
  end)

  it("lets the chunk call suspending functions", function()
    local code, out = run { "-e", "require('sandlot').sleep(5) print('slept')" }
    assert.are.equal(0, code)
    assert.are.equal("slept\n", out)
  end)

  it("needs a chunk", function()
    local code, _, err = run { "-e" }
    assert.are.equal(2, code)
    assert.matches("%-e: missing CHUNK", err)
  end)
end)

describe("sandlot run", function()
  local dir

  before_each(function()
    dir = support.temp_dir()
  end)

  after_each(function()
    support.remove_tree(dir)
  end)

  local function write(name, text)
    local path = dir .. "/" .. name
    local file = assert(io.open(path, "w"))
    file:write(text)
    file:close()
    return path
  end

  it("sets arg and ... like lua does", function()
    local script = write("args.lua", "print(arg[0], arg[1], arg[2], arg[-1], select('#', ...), ...)")
    local code, out = run { "run", script, "x", "y z" }
    assert.are.equal(0, code)
    assert.are.equal(script .. "\tx\ty z\trun\t2\tx\ty z\n", out)
  end)

  it("reads the script from stdin for -", function()
    local code, out = run({ "run", "-" }, { input = "print('from stdin')" })
    assert.are.equal(0, code)
    assert.are.equal("from stdin\n", out)
  end)

  it("exits 1 when the file is missing", function()
    local code, _, err = run { "run", dir .. "/missing.lua" }
    assert.are.equal(1, code)
    assert.are.equal("sandlot: ENOENT: cannot open script (no such file or directory): " .. dir
      .. "/missing.lua\n", err)
  end)

  it("exits 1 when the file is a directory", function()
    local code, _, err = run { "run", dir }
    assert.are.equal(1, code)
    assert.are.equal("sandlot: EISDIR: cannot open script (is a directory): " .. dir .. "\n", err)
  end)

  it("needs a file", function()
    local code, _, err = run { "run" }
    assert.are.equal(2, code)
    assert.matches("run: missing FILE", err)
  end)

  it("runs without the source tree", function()
    local code, out = run({ "-e", "print(require('sandlot').version)" }, { cwd = "/" })
    assert.are.equal(0, code)
    assert.matches("^%d+%.%d+%.%d+\n$", out)
  end)

  it("keeps running after a task fails", function()
    local script = write("bg.lua", [[
      local sandlot = require "sandlot"
      local bad = sandlot.spawn(function() sandlot.sleep(1) error("background boom") end)
      sandlot.sleep(20)
      print("main still runs", bad.status)
    ]])
    local code, out, err = run { "run", script }
    assert.are.equal(0, code)
    assert.are.equal("main still runs\tfailed\n", out)
    assert.matches("sandlot: task 2 %(.*bg%.lua:2%) failed: .*bg%.lua:2: background boom\nstack traceback:", err)
  end)

  it("prints a luv callback's traceback and keeps running", function()
    local script = write("luv.lua", [[
      local uv = require "luv"
      local timer = uv.new_timer()
      timer:start(0, 0, function() timer:close() error("callback boom") end)
      require("sandlot").sleep(20)
      print("host alive")
    ]])
    local code, out, err = run { "run", script }
    assert.are.equal(0, code)
    assert.are.equal("host alive\n", out)
    assert.matches("sandlot: luv callback failed: .*luv%.lua:3: callback boom\nstack traceback:", err)
  end)

  it("waits for spawned tasks after the main task ends", function()
    local script = write("spawned.lua", [[
      local sandlot = require "sandlot"
      sandlot.spawn(function() sandlot.sleep(20) print("spawned task done") end)
      print("main done")
    ]])
    local code, out = run { "run", script }
    assert.are.equal(0, code)
    assert.are.equal("main done\nspawned task done\n", out)
  end)

  it("does not wait for luv handles nobody awaits", function()
    local script = write("handle.lua", [[
      local timer = require("luv").new_timer()
      timer:start(60000, 60000, function() end)
      print("main done")
    ]])
    local code, out = run { "run", script }
    assert.are.equal(0, code)
    assert.are.equal("main done\n", out)
  end)

  it("cancels the other tasks when the main task fails", function()
    local script = write("cancel.lua", [[
      local sandlot = require "sandlot"
      sandlot.spawn(function()
        local ok, err = pcall(sandlot.sleep, 60000)
        print("background", ok, err == sandlot.cancelled)
      end)
      sandlot.sleep(1)
      error("main fails")
    ]])
    local code, out = run { "run", script }
    assert.are.equal(1, code)
    assert.are.equal("background\tfalse\ttrue\n", out)
  end)

  it("exits 1 when the main chunk returns a fail tuple", function()
    local script = write("fails.lua", "print('ran')\nreturn nil, 'EFOO: bad thing', 'EFOO'\n")
    local code, out, err = run { "run", script }
    assert.are.equal(1, code)
    assert.are.equal("ran\n", out)
    assert.are.equal("sandlot: EFOO: bad thing\n", err)
    code, out, err = run { "-e", "return 1, 'two'" }
    assert.are.equal(0, code, err)
    code = run { "-e", "return nil" }
    assert.are.equal(0, code)
  end)

  it("names the tasks that nothing can resume", function()
    local script = write("stuck2.lua", [[
      local sandlot = require "sandlot"
      sandlot.spawn(function()
        pcall(sandlot.await, function(done) end)
      end)
    ]])
    local code, _, err = run { "run", script }
    assert.are.equal(0, code)
    assert.matches("1 task%(s%) wait for something that nothing will deliver; cancelling them:\n"
      .. "  task %d+ %(.-stuck2%.lua:2%), waiting at .-stuck2%.lua:3\n", err)
  end)

  it("cancels tasks that nothing can resume", function()
    local script = write("stuck.lua", [[
      local sandlot = require "sandlot"
      sandlot.spawn(function()
        local ok, err = pcall(sandlot.await, function(done) end)
        print("stuck task", err == sandlot.cancelled)
      end)
    ]])
    local code, out, err = run { "run", script }
    assert.are.equal(0, code)
    assert.are.equal("stuck task\ttrue\n", out)
    assert.matches("1 task%(s%) wait for something that nothing will deliver", err)
  end)

  for _, case in ipairs {
    { "a suspended task", "require('sandlot').sleep(60000)" },
    { "Lua code that never suspends", "while true do end" },
  } do
    it("exits 130 when SIGINT cancels " .. case[1], function()
      local script = write("sigint.lua", "io.stdout:write('ready\\n') io.stdout:flush() " .. case[2])
      local code = run({ "run", script }, {
        on_stdout = function(data, process)
          if data:find "ready" then
            process:kill "sigint"
          end
        end,
      })
      assert.are.equal(130, code)
    end)
  end
end)

describe("sandlot options", function()
  it("prints help for --help and -h", function()
    for _, flag in ipairs { "--help", "-h" } do
      local code, out = run { flag }
      assert.are.equal(0, code)
      assert.matches("^usage: sandlot COMMAND", out)
      assert.matches("\n  run FILE %[ARGS%.%.%.%] ", out)
      assert.matches("\n  repl ", out)
    end
  end)

  it("lists every environment variable it reads", function()
    local _, out = run { "--help" }
    for _, name in ipairs { "SANDLOT_HOME", "SANDLOT_TEMPLATE_CACHE", "SANDLOT_VM_CACHE",
      "SANDLOT_VM_RAM_DIR", "SANDLOT_VM_ACCEL", "SANDLOT_LOG", "SANDLOT_HISTORY",
      "UV_THREADPOOL_SIZE" } do
      assert.matches("\n  " .. name .. " ", out)
    end
    assert.matches("\n  rm %[%-f%] ID%.%.%. ", out)
    assert.matches("\n  gc %[%-a%] ", out)
  end)

  it("prints the version for --version and -V", function()
    for _, flag in ipairs { "--version", "-V" } do
      local code, out = run { flag }
      assert.are.equal(0, code)
      assert.matches("^sandlot %d+%.%d+%.%d+\n$", out)
    end
  end)

  for _, case in ipairs {
    { { "bogus" }, "unknown command 'bogus'" },
    { { "script.lua" }, "use 'sandlot run FILE'" },
    { { "--bogus" }, "unknown option '%-%-bogus'" },
    { { "repl", "extra" }, "repl: unexpected argument 'extra'" },
    { { "-h", "extra" }, "%-h: unexpected argument 'extra'" },
    { { "--help", "extra" }, "%-%-help: unexpected argument 'extra'" },
    { { "--version", "extra" }, "%-%-version: unexpected argument 'extra'" },
    { { "-V", "extra" }, "%-V: unexpected argument 'extra'" },
  } do
    it("exits 2 for " .. table.concat(case[1], " "), function()
      local code, out, err = run(case[1])
      assert.are.equal(2, code)
      assert.are.equal("", out)
      assert.matches(case[2], err)
      assert.matches("Run 'sandlot %-%-help' for usage", err)
    end)
  end
end)

describe("logging", function()
  it("writes sandlot.log records at the SANDLOT_LOG level", function()
    local env = support.environment { SANDLOT_LOG = "info" }
    local code, _, err = run({ "-e", [[
      local log = require("sandlot").log
      log.debug("spec.hidden", "x=%d", 1)
      log.info("spec.shown", "sandbox=%s op=%s", "sb-1", "op-2")
    ]] }, { env = env })
    assert.are.equal(0, code)
    assert.matches("level=info event=spec%.shown sandbox=sb%-1 op=op%-2\n", err)
    assert.is_nil(err:find "spec.hidden", 1, true)
  end)

  it("writes records logged on a pool thread", function()
    local code, _, err = run { "-e", [[
      local testing = require("sandlot.core").testing
      for i = 1, 3 do testing.pool_log("record=" .. i) end
    ]] }
    assert.are.equal(0, code)
    local _, count = err:gsub("level=warn event=testing%.pool_log record=%d\n", "")
    assert.are.equal(3, count)
    assert.matches("record=1\n.*record=2\n.*record=3\n", err)
  end)

  it("warns about an invalid SANDLOT_LOG", function()
    local env = support.environment { SANDLOT_LOG = "loud" }
    local code, _, err = run({ "-e", "" }, { env = env })
    assert.are.equal(0, code)
    assert.matches("invalid SANDLOT_LOG=loud", err)
  end)
end)

describe("the REPL on a pipe", function()
  it("runs lines and prints values without prompts", function()
    local input = "=1+1\nx = {b = 2, a = {1}}\n=x\nfunction f()\n  return 'multi'\nend\n=f()\n"
    local code, out = run({ "repl" }, { input = input })
    assert.are.equal(0, code)
    assert.are.equal("2\n{ a = { 1 }, b = 2 }\nmulti\n", out)
  end)

  it("predefines sandlot and Sandbox without a hint", function()
    local code, out, err = run({ "repl" }, { input = "=Sandbox == sandlot.Sandbox, sandlot.version\n" })
    assert.are.equal(0, code, err)
    assert.are.equal("true\t" .. sandlot.version .. "\n", out)
  end)

  it("prints errors and goes on", function()
    local code, out, err = run({}, { input = "error('bad')\nprint('after')\n" })
    -- The other chunks run, but a chunk that raised makes the exit status 1.
    assert.are.equal(1, code)
    assert.are.equal("after\n", out)
    assert.matches("^sandlot: stdin:1: bad\nstack traceback:", err)
  end)

  it("waits for a suspending chunk before the next line", function()
    local input = "s = require 'sandlot'\ns.sleep(10) print('first')\nprint('second')\n"
    local code, out = run({ "repl" }, { input = input })
    assert.are.equal(0, code)
    assert.are.equal("first\nsecond\n", out)
  end)

  it("cancels a running chunk on SIGINT and goes on", function()
    local input = "print('ready') require('sandlot').sleep(60000)\nprint('next')\n"
    local code, out = run({ "repl" }, {
      input = input,
      on_stdout = function(data, process)
        if data:find "ready" then
          process:kill "sigint"
        end
      end,
    })
    assert.are.equal(0, code)
    assert.are.equal("ready\ncancelled\nnext\n", out)
  end)

  it("ends on SIGINT while it waits for input", function()
    -- "ready" comes from a chunk that may still run when a first SIGINT
    -- lands, which only cancels that chunk, so keep sending until exit.
    local uv = require "luv"
    local repeater = uv.new_timer()
    local code = run({ "repl" }, {
      input = "print('ready')\n",
      keep_stdin_open = true,
      on_stdout = function(data, process)
        if data:find "ready" then
          repeater:start(0, 20, function()
            process:kill "sigint"
          end)
        end
      end,
    })
    repeater:close()
    assert.are.equal(128 + 2, code)
  end)

  it("exits 1 after a chunk that does not compile", function()
    local code, out, err = run({ "repl" }, { input = "x = = 1\nprint('after')\n" })
    assert.are.equal(1, code)
    assert.are.equal("after\n", out)
    assert.matches("unexpected symbol near '='", err)
    code = run({ "repl" }, { input = "print('fine')\n=nil, 'EFOO: shown, not failed'\n" })
    assert.are.equal(0, code)
  end)

  it("reports an incomplete chunk at the end of input", function()
    local code, _, err = run({ "repl" }, { input = "function f(\n" })
    assert.are.equal(0, code)
    assert.matches("incomplete chunk at end of input", err)
  end)
end)

describe("the store of the sandbox commands", function()
  local dir

  before_each(function()
    dir = support.temp_dir()
  end)

  after_each(function()
    support.remove_tree(dir)
  end)

  local function run_with_home(home, args)
    return run(args, { env = support.environment { SANDLOT_HOME = home } })
  end

  it("rejects an empty SANDLOT_HOME", function()
    local code, out, err = run_with_home("", { "ls" })
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.are.equal("sandlot: ls: EINVAL: SANDLOT_HOME is set but empty (unset it for the default "
      .. "store, or set it to an absolute path)\n", err)
  end)

  it("lists nothing and creates no store", function()
    local home = dir .. "/not/there"
    local code, out, err = run_with_home(home, { "ls", "-a" })
    assert.are.equal(0, code, err)
    assert.matches("^ID +STATE +TEMPLATE +AGE\n$", out)
    code, out, err = run_with_home(home, { "gc" })
    assert.are.equal(0, code, err)
    assert.are.equal("gc: cleaned 0 sandboxes\n", out)
    code, out, err = run_with_home(home, { "kill", "sb-000000000000" })
    assert.are.equal(1, code)
    assert.are.equal("sandlot: kill sb-000000000000: ENOENT: sandbox not found (no store at " .. home
      .. ")\n", err)
    assert.is_nil(io.open(dir .. "/not"))
  end)

  it("finds no snapshots and creates no store", function()
    local home = dir .. "/not/there"
    local script = [[
local sandlot = require "sandlot"
local page = assert(sandlot.snapshots.list {})
print(#page.items, page.has_next)
print((select(2, sandlot.snapshots.get "sn-000000000000")))
print((select(2, sandlot.snapshots.delete "loaded:v1")))
print((select(2, sandlot.Sandbox.connect "sb-000000000000")))
]]
    local code, out, err = run_with_home(home, { "-e", script })
    assert.are.equal(0, code, err)
    local missing = "(no store at " .. home .. "): "
    assert.are.equal("0\tfalse\n"
      .. "ENOENT: snapshot not found " .. missing .. "sn-000000000000\n"
      .. "ENOENT: snapshot not found " .. missing .. "loaded:v1\n"
      .. "ENOENT: sandbox not found " .. missing .. "sb-000000000000\n", out)
    assert.is_nil(io.open(dir .. "/not"))
  end)

  it("names a store root that is a file once", function()
    local file = dir .. "/afile"
    assert(io.open(file, "w")):close()
    local code, _, err = run_with_home(file, { "ls" })
    assert.are.equal(1, code)
    assert.are.equal("sandlot: ls: ENOTDIR: store root is not a directory: " .. file .. "\n", err)
    local out
    code, out, err = run_with_home(file, { "-e", "print((select(2, require('sandlot').Sandbox.create {})))" })
    assert.are.equal(0, code, err)
    assert.are.equal("ENOTDIR: open store: cannot open " .. file .. ": Not a directory\n", out)
  end)
end)
