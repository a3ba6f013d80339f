--- Catalog rows: one page of 50 snapshots from a large catalog, with and
-- without filters, through the Lua API (bench/catalog_list.lua) and
-- through the core C call under it (`bench_core catalog-list`).
local proc = require "bench.proc"
local report = require "bench.report"
local stats = require "bench.stats"

local M = {}

local GROUP = "Catalog: one page of 50 snapshots"
local BASELINE = "core C call"

-- The listings and their filters (bench_core catalog-fill makes the rows:
-- row i belongs to sandbox i % 100, is named snap-<i % 1000> with tag
-- t<i / 1000> and has the label tier=gold for every tenth row). `deep`
-- starts after 100 pages of the unfiltered listing.
local listings = {
  { "newest page, no filter", {} },
  { "page 101, no filter (cursor)", {}, deep = true },
  { "filtered by source sandbox", { "sandbox=sb-000000000007" } },
  { "filtered by name", { "name=snap-42" } },
  { "filtered by name and tag (one row)", { "name=snap-42:t7" } },
  { "filtered by label", { "label=tier=gold" } },
  { "filtered by label and sandbox", { "label=tier=gold", "sandbox=sb-00000000000a" } },
  { "filtered by label and sandbox, no match", { "label=tier=gold", "sandbox=sb-00000000000b" } },
}

--- One batch of timed listings through the Lua API: { rows, samples_us }.
local function lua_batch(ctx, home, filters)
  return proc.json { ctx.sandlot, "run", ctx.source_dir .. "/bench/catalog_list.lua", home,
    tostring(ctx.catalog_runs), table.unpack(filters) }
end

local function core_batch(ctx, home, filters)
  return proc.json { ctx.core.program, "catalog-list", home, tostring(ctx.catalog_runs),
    table.unpack(filters) }
end

local function listing_row(ctx, home, listing, fill)
  local filters = { table.unpack(listing[2]) }
  if listing.deep then
    filters[#filters + 1] = "cursor=" .. fill.deep_cursor
  end
  local lua, err = lua_batch(ctx, home, filters)
  local core
  if lua ~= nil then
    core, err = core_batch(ctx, home, filters)
  end
  if core == nil then
    return ctx.add(report.row { group = GROUP, name = listing[1], unit = "us", status = "failed",
      reason = tostring(err) })
  end
  ctx.add(report.row {
    group = GROUP,
    name = ("%s (%d snapshots, %d %s returned)"):format(listing[1], fill.rows, lua.rows,
      lua.rows == 1 and "row" or "rows"),
    unit = "us", sandlot = stats.summary(lua.samples_us), api = ctx.lua.api,
    baseline_name = BASELINE, baseline = stats.summary(core.samples_us),
    ratio = stats.pair_ratios(lua.samples_us, core.samples_us),
    note = listing == listings[1] and ("sandlot.snapshots.list against sl_snapshots_list; "
      .. "each side lists %d times in its own process after one untimed listing, the Lua "
      .. "API first"):format(ctx.catalog_runs) or nil,
  })
end

function M.run(ctx)
  ctx.log("catalog: %d snapshots, %d listings each", ctx.catalog_rows, ctx.catalog_runs)
  local home = ctx.work .. "/catalog-home"
  local fill, err = proc.json { ctx.core.program, "catalog-fill", home,
    tostring(ctx.catalog_rows) }
  if fill == nil then
    ctx.add(report.row { group = GROUP, name = "all listings", unit = "us", status = "failed",
      reason = tostring(err) })
  else
    for _, listing in ipairs(listings) do
      listing_row(ctx, home, listing, fill)
    end
  end
  proc.output { "/bin/rm", "-rf", "--one-file-system", home }
end

return M
