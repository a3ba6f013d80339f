-- The threadpool pattern of lua/async.h, through the internal test binding
-- sandlot.core.testing, which runs real blocking calls on the uv pool.
local sandlot = require "sandlot"
local testing = require("sandlot.core").testing
local uv = require "luv"

-- Suspend until condition() holds, checking every 2 ms; fail after 5000
-- checks so that a broken count cannot hang the spec.
local function eventually(condition, description)
  for _ = 1, 5000 do
    if condition() then
      return
    end
    sandlot.sleep(2)
  end
  error("never happened: " .. description, 2)
end

describe("threadpool work", function()
  before_each(function()
    testing.pool_open_gate(false)
  end)

  after_each(function()
    testing.pool_open_gate(true)
    collectgarbage()
  end)

  it("suspends the task while the loop keeps running", function()
    local ticks = 0
    local ticker = sandlot.spawn(function()
      while true do
        sandlot.sleep(1)
        ticks = ticks + 1
      end
    end)
    local worker = sandlot.spawn(function()
      return testing.pool_block(30000)
    end)
    eventually(function()
      return ticks >= 3
    end, "ticks while the work blocks")
    assert.are.equal("suspended", worker.status)
    testing.pool_open_gate(true)
    assert.is_true(worker:wait())
    ticker:cancel()
  end)

  it("returns a nanosleep's result", function()
    assert.is_true(testing.pool_sleep(5))
  end)

  it("reads a file on the pool", function()
    local path = os.tmpname()
    local file = assert(io.open(path, "wb"))
    file:write("line one\n\0binary\n")
    file:close()
    local content = testing.pool_read(path)
    os.remove(path)
    assert.are.equal("line one\n\0binary\n", content)
  end)

  it("returns the fail tuple for a missing file", function()
    local value, message, name = testing.pool_read("/nonexistent/sandlot-spec")
    assert.is_nil(value)
    assert.are.equal("ENOENT: cannot open /nonexistent/sandlot-spec: No such file or directory",
      message)
    assert.are.equal("ENOENT", name)
  end)

  it("runs 16 blocking calls at the same time", function()
    testing.pool_rendezvous_reset()
    local tasks = {}
    for i = 1, 16 do
      tasks[i] = sandlot.spawn(testing.pool_rendezvous, 16, 20000)
    end
    local values, message = sandlot.wait_all(tasks)
    assert.is_nil(message)
    assert.are.equal(16, values.n)
  end)

  it("lets a cancelled task go while its work runs, then frees the work", function()
    local before = testing.pool_stats()
    local t = sandlot.spawn(testing.pool_block, 30000)
    eventually(function()
      return testing.pool_stats().ran > before.ran
    end, "the work started")

    assert.is_true(t:cancel())
    assert.are.equal("ECANCELED", select(3, t:wait()))
    -- The gate is closed, so the work cannot have finished.
    assert.are.equal(before.freed, testing.pool_stats().freed)

    testing.pool_open_gate(true)
    eventually(function()
      return testing.pool_stats().freed > before.freed
    end, "the work was freed")
    local after = testing.pool_stats()
    assert.are.equal(before.pushed, after.pushed)
    assert.are.equal(before.ran + 1, after.ran)
  end)

  it("survives collecting a cancelled task while its work runs", function()
    local before = testing.pool_stats()
    do
      local t = sandlot.spawn(testing.pool_block, 30000)
      eventually(function()
        return testing.pool_stats().ran > before.ran
      end, "the work started")
      t:cancel()
      t:wait()
    end
    collectgarbage()
    collectgarbage()
    testing.pool_open_gate(true)
    eventually(function()
      return testing.pool_stats().freed > before.freed
    end, "the work was freed")
    assert.are.equal(before.pushed, testing.pool_stats().pushed)
  end)

  it("raises a clear error outside a task", function()
    local message
    local timer = uv.new_timer()
    timer:start(0, 0, function()
      local ok, err = pcall(testing.pool_sleep, 1)
      message = not ok and err
      timer:close()
    end)
    sandlot.sleep(10)
    assert.matches("testing.pool_sleep: cannot suspend outside a task", message)
  end)
end)

describe("sl_push_error", function()
  it("builds the fail tuple from an sl_error", function()
    local value, message, name = testing.fail("EBUSY", "operation in progress: sb-1")
    assert.is_nil(value)
    assert.are.equal("EBUSY: operation in progress: sb-1", message)
    assert.are.equal("EBUSY", name)
  end)

  it("names unknown codes EIO", function()
    local _, message, name = testing.fail("ENOTANERRNO", "x")
    assert.are.equal("EIO: x", message)
    assert.are.equal("EIO", name)
  end)
end)
