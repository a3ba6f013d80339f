-- Times the Lua sandbox API in a fresh store (as root):
--   sandlot run bench/lua_sandbox.lua [CREATES] [EXECS]
-- 1. CREATES sandboxes one after another, each timed from Sandbox.create
--    to the result of sb:exec "true", then killed (kill timed apart);
-- 2. EXECS round trips of sb:exec { "true" } on one sandbox;
-- 3. five creates at once in parallel tasks (wall time of the batch).
-- One warm-up create, which imports the template into the store, is not
-- counted. Prints one JSON object; asserts nothing.
local sandlot = require "sandlot"
local uv = require "luv"
local Sandbox = sandlot.Sandbox

local creates = tonumber(arg[1]) or 20
local execs = tonumber(arg[2]) or 200

local home = assert(uv.fs_mkdtemp "/tmp/sandlot-bench-XXXXXX")
assert(sandlot.set_home(home))

local function ms_since(start)
  return (uv.hrtime() - start) / 1e6
end

local function stats(samples)
  table.sort(samples)
  local function at(q)
    return samples[math.max(1, math.ceil(#samples * q))]
  end
  return { n = #samples, median = at(0.5), p90 = at(0.9), min = samples[1], max = samples[#samples] }
end

local function json(value)
  if type(value) == "table" then
    local keys = {}
    for key in pairs(value) do
      keys[#keys + 1] = key
    end
    table.sort(keys)
    local parts = {}
    for _, key in ipairs(keys) do
      parts[#parts + 1] = ("%q: %s"):format(key, json(value[key]))
    end
    return "{" .. table.concat(parts, ", ") .. "}"
  elseif math.type(value) == "integer" then
    return tostring(value)
  elseif type(value) == "number" then
    return ("%.3f"):format(value)
  end
  return ("%q"):format(tostring(value))
end

local warm = assert(Sandbox.create {})
assert(warm:kill())

local first_exec, kill = {}, {}
for i = 1, creates do
  local start = uv.hrtime()
  local sb = assert(Sandbox.create {})
  assert(assert(sb:exec "true").exit_code == 0)
  first_exec[i] = ms_since(start)
  start = uv.hrtime()
  assert(sb:kill())
  kill[i] = ms_since(start)
end

local sb = assert(Sandbox.create {})
local round_trip = {}
for i = 1, execs do
  local start = uv.hrtime()
  assert(sb:exec { "true" })
  round_trip[i] = ms_since(start)
end
assert(sb:kill())

local start = uv.hrtime()
local tasks = {}
for i = 1, 5 do
  tasks[i] = sandlot.spawn(function()
    local one = assert(Sandbox.create {})
    assert(one:exec "true")
    return one
  end)
end
local five = assert(sandlot.wait_all(tasks))
local parallel = ms_since(start)
for _, one in ipairs(five) do
  assert(one:kill())
end

print(json {
  create_to_first_exec_ms = stats(first_exec),
  exec_true_ms = stats(round_trip),
  kill_ms = stats(kill),
  five_parallel_creates_ms = parallel,
})
os.execute("rm -rf " .. home)
