--- Compiling and printing for the REPL (the loop itself is lua/repl.c).
local core = require "sandlot.core"
local inspect = require "sandlot.inspect"

local M = {}

--- The line the REPL prints under its version on a terminal.
M.hint = 'sandlot and Sandbox are predefined; try: sb = Sandbox.create { auto_kill = true }'

--- Set the globals `sandlot` (the module) and `Sandbox` (sandlot.Sandbox)
-- that REPL chunks start with.
function M.set_globals()
  local sandlot = require "sandlot"
  _G.sandlot = sandlot
  _G.Sandbox = sandlot.Sandbox
end

--- Compile one chunk of input. "=expr" and bare expressions return their
-- values. Returns the function, or nil and "incomplete" when more lines
-- could complete it, or nil and the syntax error.
function M.compile(source)
  local expression = source:match "^%s*=(.*)$"
  if expression then
    source = expression
  end
  local fn = load("return " .. source, "=stdin", "t")
  if fn then
    return fn
  end
  local err
  fn, err = load(source, "=stdin", "t")
  if fn then
    return fn
  end
  if err:sub(-5) == "<eof>" then
    return nil, "incomplete"
  end
  return nil, err
end

--- Format values for display: strings as they are, everything else
-- through sandlot.inspect, separated by tabs.
function M.format(values)
  local parts = {}
  for i = 1, values.n do
    local v = values[i]
    parts[i] = type(v) == "string" and v or inspect(v)
  end
  return table.concat(parts, "\t")
end

--- Print what a finished chunk task returned. Failures were printed with
-- their traceback when the task failed.
function M.show(task)
  if task.status == "done" then
    local values = core.task_values(task)
    if values.n > 0 then
      print(M.format(values))
    end
  elseif task.status == "cancelled" then
    print "cancelled"
  end
end

return M
