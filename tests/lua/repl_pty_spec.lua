-- The REPL on a pseudo-terminal, driven through tmux on a private server
-- socket: keys go in with send-keys, the screen comes back from
-- capture-pane.
local sandlot = require "sandlot"
local sandboxes = require "sandboxes"
local support = require "support"
local uv = require "luv"

-- A fresh server socket for each test: a server that kill-server stopped
-- may still hold the previous socket name for a moment.
local socket
local sessions = 0

local function tmux(...)
  local code, out, err = support.run { "tmux", "-L", socket, ... }
  assert(code == 0, ("tmux %s failed: %s"):format(table.concat({ ... }, " "), err))
  return out
end

-- The screen without trailing spaces and blank lines: tmux drops the
-- space after a prompt, so the prompt reads ">" here.
local function screen()
  local lines = {}
  for line in (tmux("capture-pane", "-p", "-t", "repl") .. "\n"):gmatch "(.-)\n" do
    lines[#lines + 1] = line:gsub("%s+$", "")
  end
  while #lines > 0 and lines[#lines] == "" do
    lines[#lines] = nil
  end
  return table.concat(lines, "\n")
end

-- Suspend until the screen matches `pattern`; checks every 10 ms and gives
-- up after 1000 checks with the screen in the message.
local function wait_for(pattern)
  for _ = 1, 1000 do
    local text = screen()
    if text:find(pattern) then
      return text
    end
    sandlot.sleep(10)
  end
  error(("screen never matched %q:\n%s"):format(pattern, screen()), 2)
end

local function type_line(text)
  tmux("send-keys", "-t", "repl", "-l", text)
  tmux("send-keys", "-t", "repl", "Enter")
end

local function press(key)
  tmux("send-keys", "-t", "repl", key)
end

local dir, history, store

local function start_repl()
  sessions = sessions + 1
  socket = ("sandlot-spec-%d-%d"):format(uv.os_getpid(), sessions)
  dir = support.temp_dir()
  history = dir .. "/history"
  store = dir .. "/store"
  local command = ("env SANDLOT_HISTORY=%s SANDLOT_HOME=%s %s; echo EXIT=$?; sleep 600"):format(
    history, store, support.sandlot)
  tmux("-f", "/dev/null", "new-session", "-d", "-s", "repl", "-x", "100", "-y", "40", command)
  wait_for "\n>$"
end

--- Kill what a test left running in its store, from a second sandlot.
local kill_leftovers = [[
for _, sb in ipairs(assert(require("sandlot").Sandbox.list { state = "running" })) do
  sb:kill()
end]]

local function stop_repl()
  support.run { "tmux", "-L", socket, "kill-server" }
  if uv.fs_stat(store) then
    support.run_sandlot({ "-e", kill_leftovers }, { env = support.environment { SANDLOT_HOME = store } })
  end
  support.remove_tree(dir)
end

describe("the REPL on a terminal", function()
  before_each(start_repl)
  after_each(stop_repl)

  it("prints a hint about the predefined globals", function()
    local text = screen()
    assert.matches("^sandlot [%d.]+ on Lua 5%.4%.%d+; Ctrl%-C cancels, Ctrl%-D exits%.\n", text)
    assert.matches("\nsandlot and Sandbox are predefined; try: sb = Sandbox%.create { auto_kill = true }\n>$",
      text)
    type_line "=sandlot.Sandbox == Sandbox, type(sandlot.spawn)"
    wait_for "\ntrue%s+function\n>$"
  end)

  local missing = sandboxes.missing_capability()
  if missing then
    io.stderr:write("SKIPPED: creating a sandbox at the prompt: ", missing, "\n")
  else
    it("creates a sandbox on the first line", function()
      type_line "sb = Sandbox.create{}"
      wait_for "sb = Sandbox%.create{}\n>$"
      type_line "=sb:exec('echo made at the prompt').stdout"
      wait_for "\nmade at the prompt\n\n>$"
      type_line "=sb:kill()"
      wait_for "\ntrue\n>$"
    end)
  end

  it("prints expression values", function()
    type_line "1 + 1"
    wait_for "\n2\n>$"
    type_line "'text', nil, 3.5"
    wait_for "\ntext%s+nil%s+3%.5\n>$" -- tmux shows tabs as spaces
  end)

  it("prints tables readably", function()
    type_line "t = {b = {1, 2}, a = 'x'}; t.self = t"
    type_line "=t"
    wait_for '\n{ a = "x", b = { 1, 2 }, self = <cycle> }\n>$'
  end)

  it("continues incomplete chunks on the next line", function()
    type_line "function twice(x)"
    wait_for "\n>>$"
    type_line "  return x * 2"
    type_line "end"
    wait_for "\n>> end\n>$"
    type_line "=twice(21)"
    wait_for "\n42\n>$"
  end)

  it("runs suspending functions in a chunk", function()
    type_line "require('sandlot').sleep(20) print('after sleep')"
    wait_for "\nafter sleep\n>$"
  end)

  it("prints an error with its traceback and returns to the prompt", function()
    type_line "error('oops')"
    wait_for "sandlot: stdin:1: oops\nstack traceback:\n"
    wait_for "\n>$"
    type_line "=1"
    wait_for "\n1\n>$"
  end)

  it("cancels a running chunk on Ctrl-C", function()
    type_line "require('sandlot').sleep(60000)"
    wait_for "sleep%(60000%)$"
    press "C-c"
    wait_for "\ncancelled\n>$"
    type_line "=2"
    wait_for "\n2\n>$"
  end)

  it("interrupts a chunk that never suspends on Ctrl-C", function()
    -- The output shows that the chunk runs, so Ctrl-C cannot arrive
    -- while the line is still being edited.
    type_line "print('spinning') while true do end"
    wait_for "\nspinning$"
    press "C-c"
    wait_for "\ncancelled\n>$"
    type_line "=3"
    wait_for "\n3\n>$"
    assert.is_nil(screen():find ">\n>\n")
  end)

  it("drops the edited line on Ctrl-C", function()
    tmux("send-keys", "-t", "repl", "-l", "this is not lua")
    wait_for "> this is not lua"
    press "C-c"
    type_line "=4"
    local text = wait_for "\n4\n>$"
    assert.is_nil(text:find "syntax error")
    assert.is_nil(text:find "unexpected symbol")
  end)

  it("runs a timer while it waits for input", function()
    type_line "s = require 'sandlot'"
    type_line "s.spawn(function() s.sleep(30) print('timer fired') end)"
    wait_for "\ntimer fired\n>$"
  end)

  it("keeps the edited line when output arrives", function()
    type_line "s = require 'sandlot'"
    type_line "s.spawn(function() s.sleep(200) print('late output') end)"
    tmux("send-keys", "-t", "repl", "-l", "half typed")
    wait_for "\nlate output\n> half typed$"
    press "C-u"
    type_line "=5"
    wait_for "\n5\n>$"
  end)

  it("exits 0 on Ctrl-D and writes the history", function()
    type_line "=6"
    wait_for "\n6\n>$"
    type_line "x_from_history = 1"
    press "C-d"
    wait_for "EXIT=0"
    local file = assert(io.open(history))
    local text = file:read "a"
    file:close()
    assert.matches("=6\n", text)
    assert.matches("x_from_history = 1\n", text)
  end)
end)
