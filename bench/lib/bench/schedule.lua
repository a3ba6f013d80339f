--- The order of benchmark runs: warm-up runs, then the two sides of a
-- comparison alternating A B A B, so that drift in the machine's load
-- and page cache reaches both sides alike.
local M = {}

--- The steps of a comparison: `warmup` untimed runs of each side, then
-- `runs` pairs. Each step is { side = "a" or "b", run = i } (run is nil
-- for a warm-up). A side whose name is in `skip` gets no steps.
function M.plan(runs, warmup, skip)
  skip = skip or {}
  local steps = {}
  local function add(side, run)
    if not skip[side] then
      steps[#steps + 1] = { side = side, run = run }
    end
  end
  for _ = 1, warmup do
    add "a"
    add "b"
  end
  for i = 1, runs do
    add("a", i)
    add("b", i)
  end
  return steps
end

--- Run a comparison. `spec` has runs, warmup (default 1), and a and b:
-- functions that run one measurement and return a table of metrics
-- ({ total_ms = 12.5, ... }) or nil and an error message. Either side may
-- be nil (no such side yet). Returns { a = { metric = samples },
-- b = { ... } } with the samples of timed runs in run order, or nil and
-- the first error, naming the side and run.
function M.run(spec)
  local skip = { a = spec.a == nil, b = spec.b == nil }
  local samples = { a = {}, b = {} }
  for _, step in ipairs(M.plan(spec.runs, spec.warmup or 1, skip)) do
    local metrics, err = spec[step.side](step.run)
    if metrics == nil then
      local when = step.run and ("run " .. step.run) or "warm-up"
      return nil, ("side %s, %s: %s"):format(step.side, when, tostring(err))
    end
    if step.run ~= nil then
      for name, value in pairs(metrics) do
        local list = samples[step.side][name] or {}
        samples[step.side][name] = list
        list[step.run] = value
      end
    end
  end
  for side, metrics in pairs(samples) do
    for name, list in pairs(metrics) do
      for i = 1, spec.runs do
        if type(list[i]) ~= "number" then
          return nil, ("side %s returned no %s in run %d"):format(side, name, i)
        end
      end
    end
  end
  return samples
end

return M
