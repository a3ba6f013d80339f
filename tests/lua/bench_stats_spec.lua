-- The benchmark harness's statistics and run order (bench/lib/bench).
package.path = assert(os.getenv "SANDLOT_SOURCE_DIR", "SANDLOT_SOURCE_DIR is not set")
  .. "/bench/lib/?.lua;" .. package.path
local stats = require "bench.stats"
local schedule = require "bench.schedule"

describe("stats.summary", function()
  it("gives the middle value of an odd count", function()
    local s = stats.summary { 5, 1, 9, 3, 7 }
    assert.are.equal(5, s.n)
    assert.are.equal(5, s.median)
    assert.are.equal(1, s.min)
    assert.are.equal(9, s.max)
  end)

  it("averages the two middle values of an even count", function()
    assert.are.equal(2.5, stats.summary({ 4, 1, 3, 2 }).median)
  end)

  it("keeps the samples in measured order", function()
    assert.are.same({ 3, 1, 2 }, stats.summary({ 3, 1, 2 }).samples)
  end)

  it("handles one sample", function()
    local s = stats.summary { 42 }
    assert.are.same({ 1, 42, 42, 42 }, { s.n, s.median, s.min, s.max })
  end)

  it("returns nil for no samples", function()
    assert.is_nil(stats.summary {})
  end)

  it("rejects a sample that is not a number", function()
    assert.has_error(function()
      stats.summary { 1, "2" }
    end, "stats: sample 2 is not a number: 2")
    assert.has_error(function()
      stats.summary { 0 / 0 }
    end)
  end)
end)

describe("stats.pair_ratios", function()
  it("divides run i of A by run i of B", function()
    local r = stats.pair_ratios({ 10, 30, 20 }, { 20, 30, 10 })
    assert.are.same({ 0.5, 1, 2 }, r.samples)
    assert.are.equal(1, r.median)
    assert.are.equal(0.5, r.min)
    assert.are.equal(2, r.max)
  end)

  it("leaves out pairs whose B is zero", function()
    assert.are.same({ 2 }, stats.pair_ratios({ 1, 4 }, { 0, 2 }).samples)
  end)

  it("rejects lists that are not paired", function()
    assert.has_error(function()
      stats.pair_ratios({ 1, 2 }, { 1 })
    end, "stats: 2 runs of A but 1 of B cannot be paired")
  end)
end)

describe("stats.percentile", function()
  it("takes the nearest rank", function()
    local samples = { 10, 1, 9, 2, 8, 3, 7, 4, 6, 5 }
    assert.are.equal(9, stats.percentile(samples, 90))
    assert.are.equal(5, stats.percentile(samples, 50))
    assert.are.equal(1, stats.percentile(samples, 0))
    assert.are.equal(10, stats.percentile(samples, 100))
  end)
end)

describe("schedule.plan", function()
  local function sides(steps)
    local out = {}
    for _, step in ipairs(steps) do
      out[#out + 1] = step.side .. (step.run or "w")
    end
    return table.concat(out, " ")
  end

  it("warms up both sides, then alternates A and B", function()
    assert.are.equal("aw bw a1 b1 a2 b2 a3 b3", sides(schedule.plan(3, 1)))
  end)

  it("runs without warm-up", function()
    assert.are.equal("a1 b1 a2 b2", sides(schedule.plan(2, 0)))
  end)

  it("leaves out a skipped side", function()
    assert.are.equal("bw b1 b2", sides(schedule.plan(2, 1, { a = true })))
  end)
end)

describe("schedule.run", function()
  it("calls the sides in plan order and keeps only timed runs", function()
    local calls = {}
    local function side(name)
      return function(run)
        calls[#calls + 1] = name .. (run or "w")
        return { ms = run and run * 10 or 999, bytes = 1 }
      end
    end
    local samples = assert(schedule.run { runs = 2, warmup = 1, a = side "a", b = side "b" })
    assert.are.equal("aw bw a1 b1 a2 b2", table.concat(calls, " "))
    assert.are.same({ 10, 20 }, samples.a.ms)
    assert.are.same({ 10, 20 }, samples.b.ms)
    assert.are.same({ 1, 1 }, samples.a.bytes)
  end)

  it("runs one side alone", function()
    local samples = assert(schedule.run {
      runs = 2, warmup = 0,
      b = function(run)
        return { ms = run }
      end,
    })
    assert.are.same({}, samples.a)
    assert.are.same({ 1, 2 }, samples.b.ms)
  end)

  it("stops at the first failure and names the side and run", function()
    local runs_of_b = 0
    local samples, err = schedule.run {
      runs = 3, warmup = 1,
      a = function(run)
        if run == 2 then
          return nil, "criu dump failed"
        end
        return { ms = 1 }
      end,
      b = function()
        runs_of_b = runs_of_b + 1
        return { ms = 1 }
      end,
    }
    assert.is_nil(samples)
    assert.are.equal("side a, run 2: criu dump failed", err)
    assert.are.equal(2, runs_of_b)
  end)

  it("names a failed warm-up", function()
    local _, err = schedule.run {
      runs = 1, warmup = 1,
      a = function()
        return nil, "boom"
      end,
    }
    assert.are.equal("side a, warm-up: boom", err)
  end)

  it("rejects a metric that some runs did not return", function()
    local samples, err = schedule.run {
      runs = 2, warmup = 0,
      a = function(run)
        return run == 1 and { ms = 1, pause_ms = 3 } or { ms = 2 }
      end,
    }
    assert.is_nil(samples)
    assert.are.equal("side a returned no pause_ms in run 2", err)
  end)
end)
