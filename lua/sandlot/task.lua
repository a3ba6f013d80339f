--- Waiting for groups of tasks.
local core = require "sandlot.core"

local M = {}

local function check_tasks(fname, tasks)
  if type(tasks) ~= "table" then
    error(("%s: expected a list of tasks, got %s"):format(fname, type(tasks)), 3)
  end
end

--- Wait until every task in the list has ended; suspends.
--
-- A failing task does not stop the wait or the other tasks. A task fails
-- when it raised, was cancelled, or returned a fail tuple (nil and a
-- message, the convention for expected failures). Returns a list whose
-- element i is the first value task i returned (true when it returned
-- none). When any task failed, returns instead the fail tuple of the first
-- one in list order, with its position:
--   nil, "ENAME: task 2 of 3: message", "ENAME"
-- Every task has ended either way, so task:wait() returns each one's own
-- results at once.
function M.wait_all(tasks)
  check_tasks("sandlot.wait_all", tasks)
  for _, t in ipairs(tasks) do
    t:wait()
  end
  local values = { n = #tasks }
  for i, t in ipairs(tasks) do
    local value, message, name = t:wait()
    if value == nil and type(message) == "string" then
      name = name or message:match "^(E%u+): " or "EIO"
      local detail = message:gsub("^" .. name .. ": ", "", 1)
      return nil, ("%s: task %d of %d: %s"):format(name, i, #tasks, detail), name
    end
    values[i] = value
  end
  return values
end

--- Wait until one task in the list has ended; suspends unless one has
-- ended already. Returns that task and its index. The other tasks keep
-- running.
function M.wait_any(tasks)
  check_tasks("sandlot.wait_any", tasks)
  return core.wait_any(tasks)
end

return M
