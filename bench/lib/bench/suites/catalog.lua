--- Catalog rows: one page of 50 snapshots from a large catalog, with and
-- without filters.
local report = require "bench.report"
local stats = require "bench.stats"

local M = {}

local GROUP = "Catalog: one page of 50 snapshots"

-- bench/core_catalog.c's listings and what they ask for.
local listings = {
  { "unfiltered", "newest page, no filter" },
  { "unfiltered_page_101", "page 101, no filter (cursor)" },
  { "by_sandbox", "filtered by source sandbox" },
  { "by_name", "filtered by name" },
  { "by_name_tag", "filtered by name and tag (one row)" },
  { "by_label", "filtered by label" },
  { "by_label_and_sandbox", "filtered by label and sandbox" },
  { "by_label_and_sandbox_no_match", "filtered by label and sandbox, no match" },
}

function M.run(ctx)
  ctx.log("catalog: %d snapshots, %d listings each", ctx.catalog_rows, ctx.catalog_runs)
  local out, err = ctx.core:catalog(ctx.catalog_rows, ctx.catalog_runs, ctx.work)
  if out == nil then
    ctx.add(report.row { group = GROUP, name = "all listings", unit = "us", status = "failed",
      reason = tostring(err) })
    return
  end
  for _, listing in ipairs(listings) do
    local result = out.listings[listing[1]]
    ctx.add(report.row {
      group = GROUP,
      name = ("%s (%d snapshots, %d %s returned)"):format(listing[2], out.rows, result.rows,
        result.rows == 1 and "row" or "rows"),
      unit = "us", sandlot = stats.summary(result.samples_us), api = ctx.core.api,
    })
  end
end

return M
