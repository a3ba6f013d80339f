--- Benchmark results: rows, and their JSON and Markdown forms.
--
-- A result set is { schema, mode, started_at, settings, machine, rows }.
-- A row is one measurement of one group:
--   group, name          "Process sandboxes: snapshots", "10 MB: pause"
--   unit                 "ms", "us", "MiB"
--   status               "measured", "pending" (a side is not on main yet)
--                        or "failed"
--   sandlot, baseline    summaries (bench.stats) or nil
--   baseline_name        "raw CRIU", ...; nil when the row has no baseline
--   ratio                summary of sandlot / baseline per pair, or nil
--   api                  how the sandlot side was driven
--   reason               why a row is pending or failed
local json = require "dkjson"

local M = {}

M.SCHEMA = 1

local row_fields = {
  group = "string", name = "string", unit = "string", status = "string",
  baseline_name = "string", api = "string", reason = "string", note = "string",
  sandlot = "table", baseline = "table", ratio = "table",
}
local statuses = { measured = true, pending = true, failed = true }

--- Check and return a new row; raises on a misspelt or mistyped field.
function M.row(fields)
  for key, value in pairs(fields) do
    local expected = row_fields[key]
    if expected == nil then
      error(("report.row: unknown field %q"):format(tostring(key)), 2)
    end
    if type(value) ~= expected then
      error(("report.row: %s must be a %s, got %s"):format(key, expected, type(value)), 2)
    end
  end
  for _, key in ipairs { "group", "name", "unit" } do
    if fields[key] == nil then
      error(("report.row: missing %s"):format(key), 2)
    end
  end
  local row = {}
  for key, value in pairs(fields) do
    row[key] = value
  end
  row.status = row.status or (row.sandlot and "measured" or "pending")
  if not statuses[row.status] then
    error(("report.row: invalid status %q"):format(row.status), 2)
  end
  return row
end

local key_order = {
  -- the result set
  "schema", "mode", "started_at", "finished_at", "settings", "machine", "rows",
  -- settings
  "runs", "warmup", "creates", "execs", "catalog_rows", "catalog_runs", "image_case",
  "criu_flags", "operation", "size", "same", "raw",
  -- machine
  "cpu", "cores", "memory", "kernel", "os", "criu", "qemu", "commit", "build_type",
  "load_start", "load_end",
  -- rows and summaries
  "group", "name", "unit", "status", "api", "sandlot", "baseline_name", "baseline", "ratio",
  "reason", "note", "n", "median", "min", "max", "samples",
}

--- The result set as JSON text (keys in a fixed order, indented).
function M.json(results)
  return json.encode(results, { indent = true, keyorder = key_order }) .. "\n"
end

--- Parse JSON text written by M.json.
function M.decode(text)
  local value, _, err = json.decode(text)
  if value == nil then
    return nil, "invalid JSON: " .. tostring(err)
  end
  return value
end

--- A number with about three significant digits.
function M.number(value)
  if value == nil then
    return "—"
  end
  local magnitude = math.abs(value)
  if magnitude >= 100 then
    return ("%.0f"):format(value)
  elseif magnitude >= 10 then
    return ("%.1f"):format(value)
  elseif magnitude >= 1 then
    return ("%.2f"):format(value)
  end
  return ("%.3f"):format(value)
end

--- "median (min–max)" of a summary, or a dash.
function M.cell(summary)
  if summary == nil then
    return "—"
  end
  if summary.n == 1 then
    return M.number(summary.median)
  end
  return ("%s (%s–%s)"):format(M.number(summary.median), M.number(summary.min),
    M.number(summary.max))
end

local function escape(text)
  return (tostring(text):gsub("|", "\\|"):gsub("\n", " "))
end

local function sandlot_cell(row)
  if row.status == "measured" then
    return M.cell(row.sandlot)
  end
  return ("%s: %s"):format(row.status, row.reason or "no reason given")
end

local function row_line(row)
  local cells = {
    ("%s (%s)"):format(row.name, row.unit),
    sandlot_cell(row),
    row.baseline_name and ("%s: %s"):format(row.baseline_name, M.cell(row.baseline)) or "—",
    M.cell(row.ratio),
    row.sandlot and row.api or "—",
  }
  for i, cell in ipairs(cells) do
    cells[i] = escape(cell)
  end
  return "| " .. table.concat(cells, " | ") .. " |"
end

local function groups_in_order(rows)
  local order, by_group = {}, {}
  for _, row in ipairs(rows) do
    if by_group[row.group] == nil then
      by_group[row.group] = {}
      order[#order + 1] = row.group
    end
    table.insert(by_group[row.group], row)
  end
  return order, by_group
end

local function machine_lines(results)
  local m, s = results.machine or {}, results.settings or {}
  local lines = {
    ("- Run: %s mode, started %s, finished %s"):format(results.mode or "?",
      results.started_at or "?", results.finished_at or "?"),
    ("- Machine: %s, %s cores, %s memory, kernel %s"):format(m.cpu or "?", m.cores or "?",
      m.memory or "?", m.kernel or "?"),
    ("- CRIU %s; QEMU %s; sandlot %s (%s build)"):format(m.criu or "?", m.qemu or "?",
      m.commit or "?", m.build_type or "?"),
    ("- Load average (1 min) at start %s, at end %s"):format(m.load_start or "?",
      m.load_end or "?"),
    ("- %s timed runs per side after %s warm-up run(s) per side; sides alternate A B A B")
      :format(s.runs or "?", s.warmup or "?"),
  }
  if s.image_case then
    lines[#lines + 1] = "- Images: " .. s.image_case
  end
  return lines
end

--- The result set as a Markdown page: the run and machine, then one table
-- per group. Cells are "median (min–max)"; the ratio is the median of
-- sandlot / baseline over the pairs of runs.
function M.markdown(results)
  local out = { "# sandlot benchmark results", "" }
  for _, line in ipairs(machine_lines(results)) do
    out[#out + 1] = line
  end
  local order, by_group = groups_in_order(results.rows or {})
  for _, group in ipairs(order) do
    out[#out + 1] = ""
    out[#out + 1] = "## " .. group
    out[#out + 1] = ""
    out[#out + 1] = "| measurement | sandlot | baseline | sandlot / baseline | sandlot side |"
    out[#out + 1] = "|---|---|---|---|---|"
    for _, row in ipairs(by_group[group]) do
      out[#out + 1] = row_line(row)
    end
    local notes = {}
    for _, row in ipairs(by_group[group]) do
      if row.note then
        notes[#notes + 1] = ("- %s: %s"):format(row.name, row.note)
      end
    end
    if #notes > 0 then
      out[#out + 1] = ""
      for _, note in ipairs(notes) do
        out[#out + 1] = note
      end
    end
  end
  return table.concat(out, "\n") .. "\n"
end

--- Write `text` to `path`, replacing the file in one rename.
function M.write_file(path, text)
  local tmp = path .. ".tmp"
  local file, err = io.open(tmp, "wb")
  if file == nil then
    return nil, err
  end
  local ok, write_err = file:write(text)
  file:close()
  if not ok then
    return nil, write_err
  end
  return os.rename(tmp, path)
end

return M
