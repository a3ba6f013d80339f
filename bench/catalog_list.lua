-- The Lua API side of the catalog rows: one page of snapshots through
-- sandlot.snapshots.list, timed in this task around the call.
--
--   build/sandlot run bench/catalog_list.lua HOME RUNS [FILTER...]
--
-- HOME is a store that `bench_core catalog-fill` made. FILTER is
-- sandbox=ID, name=REF, label=KEY=VALUE or cursor=CURSOR, as for
-- `bench_core catalog-list`, which times the same listing through the
-- core C API. One untimed listing comes first, so that opening the store
-- is not counted. Prints one JSON object: the page's row count and every
-- sample in microseconds. Exit status 1 when a listing fails, 2 on a
-- usage error.
local sandlot = require "sandlot"
local uv = require "luv"

local FILTERS = { sandbox = true, name = true, label = true, cursor = true }

local function usage(message)
  io.stderr:write("bench/catalog_list.lua: ", message, "\n",
    "usage: sandlot run bench/catalog_list.lua HOME RUNS [sandbox=ID] [name=REF] ",
    "[label=KEY=VALUE] [cursor=CURSOR]\n")
  os.exit(2)
end

local function parse_args(args)
  local home, runs = args[1], math.tointeger(tonumber(args[2] or ""))
  if home == nil or home:sub(1, 1) ~= "/" then
    usage("invalid HOME: expected an absolute path")
  end
  if runs == nil or runs < 1 or runs > 100000 then
    usage(("invalid RUNS: %s (expected 1 to 100000)"):format(tostring(args[2])))
  end
  local filter = {}
  for i = 3, #args do
    local key, value = args[i]:match "^(%a+)=(.*)$"
    if not FILTERS[key] then
      usage(("invalid filter: %s (expected sandbox=, name=, label= or cursor=)"):format(args[i]))
    end
    filter[key] = value
  end
  return home, runs, filter
end

local function fail(message)
  io.stderr:write("bench/catalog_list.lua: listing failed: ", tostring(message), "\n")
  os.exit(1)
end

local function main(args)
  local home, runs, filter = parse_args(args)
  local ok, err = sandlot.set_home(home)
  if not ok then
    fail(err)
  end
  local page
  page, err = sandlot.snapshots.list(filter)
  if page == nil then
    fail(err)
  end
  local samples = {}
  for run = 1, runs do
    local start = uv.hrtime()
    page, err = sandlot.snapshots.list(filter)
    local elapsed_ns = uv.hrtime() - start
    if page == nil then
      fail(err)
    end
    samples[run] = ("%.3f"):format(elapsed_ns / 1e3)
  end
  io.write(("{\"rows\": %d, \"samples_us\": [%s]}\n"):format(#page.items,
    table.concat(samples, ", ")))
end

main(arg)
