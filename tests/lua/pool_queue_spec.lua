-- Cancelling work that waits in the pool's queue. The ctest entry runs this
-- file with UV_THREADPOOL_SIZE=1, so one blocked job fills the pool.
local sandlot = require "sandlot"
local testing = require("sandlot.core").testing

local function eventually(condition, description)
  for _ = 1, 5000 do
    if condition() then
      return
    end
    sandlot.sleep(2)
  end
  error("never happened: " .. description, 2)
end

describe("queued threadpool work", function()
  it("is removed from the queue when its task is cancelled", function()
    assert.are.equal("1", os.getenv "UV_THREADPOOL_SIZE")
    testing.pool_open_gate(false)
    local before = testing.pool_stats()
    local blocker = sandlot.spawn(testing.pool_block, 30000)
    eventually(function()
      return testing.pool_stats().ran > before.ran
    end, "the blocking work started")

    local queued = sandlot.spawn(testing.pool_sleep, 1)
    eventually(function()
      return testing.pool_stats().queued == before.queued + 2
    end, "the second work was queued")
    queued:cancel()
    assert.are.equal("ECANCELED", select(3, queued:wait()))
    eventually(function()
      return testing.pool_stats().freed == before.freed + 1
    end, "the queued work was freed")

    testing.pool_open_gate(true)
    assert.is_true(blocker:wait())
    local after = testing.pool_stats()
    assert.are.equal(before.ran + 1, after.ran)
    assert.are.equal(before.freed + 2, after.freed)
    assert.are.equal(before.pushed + 1, after.pushed)
  end)
end)
