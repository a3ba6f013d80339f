-- The benchmark harness's result rows, JSON and Markdown, and the parsers
-- of what its programs print (bench/lib/bench).
package.path = assert(os.getenv "SANDLOT_SOURCE_DIR", "SANDLOT_SOURCE_DIR is not set")
  .. "/bench/lib/?.lua;" .. package.path
local report = require "bench.report"
local stats = require "bench.stats"
local proc = require "bench.proc"
local workload = require "bench.workload"
local process = require "bench.suites.process"

local function sample_results()
  local a, b = { 40, 38, 45 }, { 80, 76, 90 }
  return {
    schema = report.SCHEMA, mode = "quick", started_at = "2026-01-02 03:04:05 UTC",
    finished_at = "2026-01-02 03:06:00 UTC",
    settings = { runs = 3, warmup = 1, image_case = "warm" },
    machine = {
      cpu = "Test CPU", cores = 2, memory = "24.0 GiB", kernel = "6.1", criu = "4.2.1",
      qemu = "7.2.22", commit = "abc1234", build_type = "RelWithDebInfo", load_start = "1.00",
      load_end = "1.50",
    },
    rows = {
      report.row {
        group = "Snapshots", name = "10 MB: pause", unit = "ms", api = "core C API",
        sandlot = stats.summary(a), baseline_name = "raw CRIU", baseline = stats.summary(b),
        ratio = stats.pair_ratios(a, b), note = "longest gap | of the workload",
      },
      report.row {
        group = "Forks", name = "one fork", unit = "ms", baseline_name = "raw CRIU",
        baseline = stats.summary { 100, 120 }, reason = "needs forks (branch snap)",
      },
      report.row { group = "Snapshots", name = "image size", unit = "MiB", status = "failed",
        reason = "criu dump failed" },
    },
  }
end

describe("report.row", function()
  it("is pending without a sandlot side and measured with one", function()
    assert.are.equal("pending", report.row({ group = "g", name = "n", unit = "ms" }).status)
    local row = report.row { group = "g", name = "n", unit = "ms", sandlot = stats.summary { 1 } }
    assert.are.equal("measured", row.status)
  end)

  it("rejects unknown fields, wrong types and missing names", function()
    assert.has_error(function()
      report.row { group = "g", name = "n", unit = "ms", median = 3 }
    end, 'report.row: unknown field "median"')
    assert.has_error(function()
      report.row { group = "g", name = "n", unit = 5 }
    end, "report.row: unit must be a string, got number")
    assert.has_error(function()
      report.row { group = "g", unit = "ms" }
    end, "report.row: missing name")
    assert.has_error(function()
      report.row { group = "g", name = "n", unit = "ms", status = "done" }
    end, 'report.row: invalid status "done"')
  end)
end)

describe("report.number", function()
  it("keeps about three significant digits", function()
    assert.are.equal("1234", report.number(1234.4))
    assert.are.equal("45.7", report.number(45.66))
    assert.are.equal("4.57", report.number(4.566))
    assert.are.equal("0.457", report.number(0.4566))
    assert.are.equal("—", report.number(nil))
  end)

  it("writes median and range, or one value", function()
    assert.are.equal("40.0 (38.0–45.0)", report.cell(stats.summary { 40, 38, 45 }))
    assert.are.equal("7.00", report.cell(stats.summary { 7 }))
    assert.are.equal("—", report.cell(nil))
  end)
end)

describe("report.markdown", function()
  it("renders the machine, then one table per group in first-seen order", function()
    local expected = table.concat({
      "# sandlot benchmark results",
      "",
      "- Run: quick mode, started 2026-01-02 03:04:05 UTC, finished 2026-01-02 03:06:00 UTC",
      "- Machine: Test CPU, 2 cores, 24.0 GiB memory, kernel 6.1",
      "- CRIU 4.2.1; QEMU 7.2.22; sandlot abc1234 (RelWithDebInfo build)",
      "- Load average (1 min) at start 1.00, at end 1.50",
      "- 3 timed runs per side after 1 warm-up run(s) per side; sides alternate A B A B",
      "- Images: warm",
      "",
      "## Snapshots",
      "",
      "| measurement | sandlot | baseline | sandlot / baseline | sandlot side |",
      "|---|---|---|---|---|",
      "| 10 MB: pause (ms) | 40.0 (38.0–45.0) | raw CRIU: 80.0 (76.0–90.0) | 0.500 (0.500–0.500) "
        .. "| core C API |",
      "| image size (MiB) | failed: criu dump failed | — | — | — |",
      "",
      "- 10 MB: pause: longest gap | of the workload",
      "",
      "## Forks",
      "",
      "| measurement | sandlot | baseline | sandlot / baseline | sandlot side |",
      "|---|---|---|---|---|",
      "| one fork (ms) | pending: needs forks (branch snap) | raw CRIU: 110 (100–120) | — | — |",
      "",
    }, "\n")
    assert.are.equal(expected, report.markdown(sample_results()))
  end)
end)

describe("report.json", function()
  it("survives a round trip with every row and sample", function()
    local results = sample_results()
    local decoded = assert(report.decode(report.json(results)))
    assert.are.same(results, decoded)
  end)

  it("writes the result set's keys in a fixed order", function()
    local text = report.json(sample_results())
    local schema, mode, rows = text:find '"schema"', text:find '"mode"', text:find '"rows"'
    assert.is_true(schema < mode and mode < rows)
  end)

  it("reports invalid JSON", function()
    local value, err = report.decode "{"
    assert.is_nil(value)
    assert.matches("^invalid JSON: ", err)
  end)
end)

describe("proc.parse_key_values", function()
  it("parses one table per line and numbers as numbers", function()
    local lines = proc.parse_key_values "dump_ms=12.5\nfork=f-1 pid=42 memory_cgroup=/sys/x\n"
    assert.are.same({ { dump_ms = 12.5 }, { fork = "f-1", pid = 42, memory_cgroup = "/sys/x" } },
      lines)
  end)

  it("keeps a CRIU command line whole", function()
    local lines = proc.parse_key_values "criu_argv=/criu dump -D /a b=c\n"
    assert.are.same({ { criu_argv = "/criu dump -D /a b=c" } }, lines)
  end)
end)

describe("workload.max_gap", function()
  local log = "10.000 10.003\n10.100 10.180\n10.200 10.250\n20.000 20.500\n"

  it("takes the maximum gap in the window", function()
    assert.are.near(80, workload.max_gap(log, 10050, 10210), 1e-6)
  end)

  it("counts a gap that started before the window", function()
    assert.are.near(80, workload.max_gap(log, 10150, 10160), 1e-6)
  end)

  it("returns nil when no gap overlaps", function()
    assert.is_nil(workload.max_gap(log, 11000, 12000))
    assert.is_nil(workload.max_gap("", 0, 1e12))
  end)
end)

describe("process.normalize_argv", function()
  it("makes the dumps of two sides comparable", function()
    local sandlot = "/deps/criu dump -D /h/images -t 3873 --leave-running "
      .. "--ghost-limit=67108864 --external 'net[4026532385]:sandlot-net' "
      .. "--external 'mnt[/dev]:sandlot-dev' --action-script /build/sandlot-criu-action"
    local raw = "/deps/criu dump -D /w/images -t 4000 --leave-running --ghost-limit=67108864 "
      .. "--external net[4026532999]:sandlot-net --external mnt[/dev]:sandlot-dev "
      .. "--action-script /bench/raw_criu.sh"
    assert.are.equal(process.normalize_argv(sandlot), process.normalize_argv(raw))
  end)

  it("tells different flags apart", function()
    assert.are_not.equal(process.normalize_argv "/criu dump --leave-running",
      process.normalize_argv "/criu dump --tcp-established")
  end)
end)
