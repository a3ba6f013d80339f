--- Summaries of benchmark samples: median, minimum, maximum, and the
-- ratio of two sides measured in pairs.
local M = {}

local function sorted_copy(samples)
  local copy = {}
  for i, value in ipairs(samples) do
    if type(value) ~= "number" or value ~= value then
      error(("stats: sample %d is not a number: %s"):format(i, tostring(value)), 3)
    end
    copy[i] = value
  end
  table.sort(copy)
  return copy
end

--- The median of a sorted list; the mean of the two middle values when
-- the count is even.
local function median_of_sorted(values)
  local n = #values
  if n % 2 == 1 then
    return values[(n + 1) // 2]
  end
  return (values[n // 2] + values[n // 2 + 1]) / 2
end

--- Summarize a list of numbers as { n, median, min, max, samples }; the
-- samples keep their measured order. Returns nil for an empty list.
function M.summary(samples)
  if #samples == 0 then
    return nil
  end
  local values = sorted_copy(samples)
  return {
    n = #values,
    median = median_of_sorted(values),
    min = values[1],
    max = values[#values],
    samples = { table.unpack(samples) },
  }
end

--- The ratio a[i] / b[i] of each pair of runs, summarized like samples.
-- Pairs where b[i] is 0 are left out. Raises when the lists differ in
-- length, because then the runs were not paired.
function M.pair_ratios(a, b)
  if #a ~= #b then
    error(("stats: %d runs of A but %d of B cannot be paired"):format(#a, #b), 2)
  end
  local ratios = {}
  for i = 1, #a do
    if b[i] ~= 0 then
      ratios[#ratios + 1] = a[i] / b[i]
    end
  end
  return M.summary(ratios)
end

--- The p-th percentile (0..100) of samples, nearest rank.
function M.percentile(samples, p)
  if #samples == 0 then
    return nil
  end
  local values = sorted_copy(samples)
  local rank = math.max(1, math.ceil(p / 100 * #values))
  return values[rank]
end

return M
