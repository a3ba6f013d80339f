-- A first look at sandlot's tasks: three workers on one event loop, one of
-- which fails, awaited together. Run it with
--   build/sandlot run examples/tasks.lua [WORKERS]
local sandlot = require "sandlot"
local uv = require "luv"

local workers = tonumber(arg[1]) or 3
local started = uv.now()

local function elapsed()
  return ("%4d ms"):format(uv.now() - started)
end

-- Each worker waits a different time, as a sandbox operation would, and
-- reports on the shared loop while the others keep running.
local function worker(id, delay)
  print(elapsed(), ("worker %d: waiting %d ms"):format(id, delay))
  sandlot.sleep(delay)
  if id == 2 then
    return nil, "EBUSY: operation in progress: worker 2", "EBUSY"
  end
  print(elapsed(), ("worker %d: done"):format(id))
  return id * 10
end

local tasks = {}
for id = 1, workers do
  tasks[id] = sandlot.spawn(worker, id, 100 * (workers - id + 1))
end

local heartbeat = sandlot.spawn(function()
  while true do
    sandlot.sleep(75)
    print(elapsed(), "heartbeat")
  end
end)

local first, index = sandlot.wait_any(tasks)
print(elapsed(), ("first to finish: worker %d (%s)"):format(index, first.status))

local values, message = sandlot.wait_all(tasks)
print(elapsed(), "wait_all:", values and sandlot.inspect(values) or message)
for id, t in ipairs(tasks) do
  print(elapsed(), ("worker %d returned"):format(id), t:wait())
end

heartbeat:cancel()
print(elapsed(), "heartbeat", select(2, heartbeat:wait()))
