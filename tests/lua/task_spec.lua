local sandlot = require "sandlot"
local uv = require "luv"

describe("sandlot.spawn", function()
  it("passes arguments and returns results", function()
    local t = sandlot.spawn(function(a, b)
      return a + b, "second"
    end, 2, 3)
    local sum, second = t:wait()
    assert.are.equal(5, sum)
    assert.are.equal("second", second)
    assert.are.equal("done", t.status)
  end)

  it("returns true from wait when the task returned nothing", function()
    local t = sandlot.spawn(function() end)
    assert.are.equal(true, t:wait())
  end)

  it("starts the task on a later loop iteration", function()
    local ran = false
    local t = sandlot.spawn(function()
      ran = true
    end)
    assert.are.equal("ready", t.status)
    assert.is_false(ran)
    t:wait()
    assert.is_true(ran)
  end)

  it("reports the running task as current", function()
    local seen
    local t = sandlot.spawn(function()
      seen = sandlot.current()
    end)
    t:wait()
    assert.are.equal(t, seen)
  end)

  it("shows label and status in tostring", function()
    local t = sandlot.spawn(sandlot.sleep, 1)
    assert.matches("^sandlot%.task: task %d+, ready$", tostring(t))
    t:wait()
    assert.matches(", done$", tostring(t))
  end)

  it("rejects a non-function", function()
    assert.has_error(function()
      sandlot.spawn(42)
    end)
  end)
end)

describe("timers", function()
  it("wake sleeping tasks in deadline order", function()
    local order = {}
    local tasks = {}
    for _, ms in ipairs { 30, 10, 20, 0 } do
      tasks[#tasks + 1] = sandlot.spawn(function()
        sandlot.sleep(ms)
        order[#order + 1] = ms
      end)
    end
    assert(sandlot.wait_all(tasks))
    assert.are.same({ 0, 10, 20, 30 }, order)
  end)

  it("fire luv timers in deadline order on the same loop", function()
    local order = {}
    for _, ms in ipairs { 25, 5, 15 } do
      local timer = uv.new_timer()
      timer:start(ms, 0, function()
        order[#order + 1] = ms
        timer:close()
      end)
    end
    sandlot.sleep(40)
    assert.are.same({ 5, 15, 25 }, order)
  end)

  it("rejects a negative duration", function()
    assert.has_error(function()
      sandlot.sleep(-1)
    end)
  end)

  it("names sandlot.sleep in argument errors", function()
    local function error_of(call)
      local ok, err = pcall(call)
      assert.is_false(ok)
      return err
    end
    local here = "^task_spec%.lua:%d+: "
    assert.matches(here .. "sandlot%.sleep: bad argument #1 %(expected milliseconds from 0 to 1e12, got %-1%)$",
      error_of(function() sandlot.sleep(-1) end))
    assert.matches(here .. "sandlot%.sleep: bad argument #1 %(expected milliseconds, got string%)$",
      error_of(function() sandlot.sleep "10" end))
    assert.matches(here .. "sandlot%.spawn: bad argument #1 %(expected a function, got no value%)$",
      error_of(function() sandlot.spawn() end))
    assert.matches(here .. "sandlot%.wait_any: expected a list of tasks, got number$",
      error_of(function() sandlot.wait_any(3) end))
    assert.matches(here .. "sandlot%.await: bad argument #1 %(expected a function, got no value%)$",
      error_of(function() sandlot.await() end))
  end)
end)

describe("a failing task", function()
  it("fails alone while other tasks finish", function()
    local failing = sandlot.spawn(function()
      sandlot.sleep(5)
      error("boom")
    end)
    local healthy = sandlot.spawn(function()
      sandlot.sleep(20)
      return "fine"
    end)
    assert.are.equal("fine", healthy:wait())
    local value, message, name = failing:wait()
    assert.is_nil(value)
    assert.are.equal("ETASK", name)
    assert.matches("^ETASK: .*task_spec%.lua:%d+: boom$", message)
    assert.are.equal("failed", failing.status)
  end)

  it("keeps an errno name from a raised fail message", function()
    -- What Lua's assert(nil, message) raises: the message without a
    -- position. (Busted replaces the global assert with luassert's.)
    local t = sandlot.spawn(function()
      error("ENOENT: sandbox not found: sb-1", 0)
    end)
    local value, message, name = t:wait()
    assert.is_nil(value)
    assert.are.equal("ENOENT: sandbox not found: sb-1", message)
    assert.are.equal("ENOENT", name)
  end)

  it("fails with a clear message on a direct coroutine.yield", function()
    local t = sandlot.spawn(function()
      coroutine.yield()
    end)
    local _, message = t:wait()
    assert.matches("coroutine.yield%(%) called in the body of a task", message)
  end)

  it("closes its to-be-closed variables", function()
    local closed = false
    local t = sandlot.spawn(function()
      local guard <close> = setmetatable({}, {
        __close = function()
          closed = true
        end,
      })
      sandlot.sleep(1)
      error("after sleep")
    end)
    t:wait()
    assert.is_true(closed)
  end)
end)

describe("sandlot.wait_all", function()
  it("returns the first value of each task in list order", function()
    local a = sandlot.spawn(function()
      sandlot.sleep(10)
      return "a"
    end)
    local b = sandlot.spawn(function()
      return "b"
    end)
    local values = assert(sandlot.wait_all { a, b })
    assert.are.same({ "a", "b", n = 2 }, values)
  end)

  it("returns an empty list for no tasks", function()
    assert.are.same({ n = 0 }, sandlot.wait_all {})
  end)

  it("waits for every task and names the first failure", function()
    local slow_done = false
    local tasks = {
      sandlot.spawn(function()
        return 1
      end),
      sandlot.spawn(function()
        error("EBUSY: operation in progress: sb-2", 0)
      end),
      sandlot.spawn(function()
        sandlot.sleep(20)
        slow_done = true
      end),
    }
    local values, message, name = sandlot.wait_all(tasks)
    assert.is_nil(values)
    assert.are.equal("EBUSY", name)
    assert.are.equal("EBUSY: task 2 of 3: operation in progress: sb-2", message)
    assert.is_true(slow_done)
    for _, t in ipairs(tasks) do
      assert.is_not.equal("suspended", t.status)
    end
  end)

  it("counts a returned fail tuple as a failure", function()
    local tasks = {
      sandlot.spawn(function()
        return nil, "ENOENT: snapshot not found: sn-1", "ENOENT"
      end),
      sandlot.spawn(function()
        return nil
      end),
    }
    local values, message, name = sandlot.wait_all(tasks)
    assert.is_nil(values)
    assert.are.equal("ENOENT: task 1 of 2: snapshot not found: sn-1", message)
    assert.are.equal("ENOENT", name)
    assert.are.equal("done", tasks[1].status)
  end)

  it("accepts a task that returned nil alone", function()
    local values = assert(sandlot.wait_all { sandlot.spawn(function()
      return nil
    end) })
    assert.are.same({ n = 1 }, values)
  end)

  it("rejects a non-table", function()
    assert.has_error(function()
      sandlot.wait_all(42)
    end, "sandlot.wait_all: expected a list of tasks, got number")
  end)
end)

describe("sandlot.wait_any", function()
  it("returns the first task to end and its index", function()
    local slow = sandlot.spawn(sandlot.sleep, 50)
    local fast = sandlot.spawn(function()
      sandlot.sleep(5)
      return "fast"
    end)
    local first, index = sandlot.wait_any { slow, fast }
    assert.are.equal(fast, first)
    assert.are.equal(2, index)
    assert.are.equal("suspended", slow.status)
    slow:cancel()
  end)

  it("returns the lowest index when several ended already", function()
    local a = sandlot.spawn(function() end)
    local b = sandlot.spawn(function() end)
    sandlot.wait_all { a, b }
    local first, index = sandlot.wait_any { b, a }
    assert.are.equal(b, first)
    assert.are.equal(1, index)
  end)

  it("rejects an empty list and non-tasks", function()
    assert.has_error(function()
      sandlot.wait_any {}
    end)
    assert.has_error(function()
      sandlot.wait_any { 1 }
    end, "sandlot.wait_any: element 1 is a number, expected a task")
  end)
end)

describe("task:cancel", function()
  it("raises the cancellation in a suspended task", function()
    local t = sandlot.spawn(sandlot.sleep, 60000)
    sandlot.sleep(1)
    assert.are.equal("suspended", t.status)
    assert.is_true(t:cancel())
    local value, message, name = t:wait()
    assert.is_nil(value)
    assert.are.equal("ECANCELED: task cancelled", message)
    assert.are.equal("ECANCELED", name)
    assert.are.equal("cancelled", t.status)
  end)

  it("ends a task that has not started without running it", function()
    local ran = false
    local t = sandlot.spawn(function()
      ran = true
    end)
    assert.is_true(t:cancel())
    assert.are.equal("cancelled", t.status)
    sandlot.sleep(1)
    assert.is_false(ran)
  end)

  it("returns false for a task that ended", function()
    local t = sandlot.spawn(function() end)
    t:wait()
    assert.is_false(t:cancel())
    assert.are.equal("done", t.status)
  end)

  it("lets the task catch it and clean up with suspending calls", function()
    local cleaned = false
    local t = sandlot.spawn(function()
      local ok, err = pcall(sandlot.sleep, 60000)
      assert(not ok and err == sandlot.cancelled)
      sandlot.sleep(1)
      cleaned = true
      return "cleaned up"
    end)
    sandlot.sleep(1)
    t:cancel()
    assert.are.equal("cleaned up", t:wait())
    assert.is_true(cleaned)
    assert.are.equal("done", t.status)
  end)

  it("delivers a cancel of the running task at its next suspension", function()
    local reached = false
    local t = sandlot.spawn(function()
      sandlot.current():cancel()
      reached = true
      sandlot.sleep(1)
      return "not reached"
    end)
    local _, _, name = t:wait()
    assert.is_true(reached)
    assert.are.equal("ECANCELED", name)
  end)

  it("replaces the values of a task woken but not yet resumed", function()
    local target = sandlot.spawn(sandlot.sleep, 5)
    local waiter
    -- The canceller waits first, so it is woken first when target ends
    -- and cancels waiter while waiter is ready with target's results.
    local canceller = sandlot.spawn(function()
      target:wait()
      return waiter.status, waiter:cancel()
    end)
    waiter = sandlot.spawn(function()
      return target:wait()
    end)
    local status_seen, cancelled = canceller:wait()
    assert.are.equal("ready", status_seen)
    assert.is_true(cancelled)
    assert.are.equal("ECANCELED", select(3, waiter:wait()))
  end)

  it("cancels the waiting task only, not the awaited one", function()
    local awaited = sandlot.spawn(function()
      sandlot.sleep(10)
      return "awaited"
    end)
    local waiting = sandlot.spawn(function()
      return awaited:wait()
    end)
    sandlot.sleep(1)
    waiting:cancel()
    assert.are.equal("ECANCELED", select(3, waiting:wait()))
    assert.are.equal("awaited", awaited:wait())
  end)

  it("is what leaving a <close> task variable does", function()
    local t
    do
      t = sandlot.spawn(sandlot.sleep, 60000)
      local scoped <close> = t
      sandlot.sleep(1)
    end
    assert.are.equal("ECANCELED", select(3, t:wait()))
  end)
end)

describe("task:wait", function()
  it("raises when a task waits for itself", function()
    local t = sandlot.spawn(function()
      return pcall(function()
        return sandlot.current():wait()
      end)
    end)
    local ok, err = t:wait()
    assert.is_false(ok)
    assert.matches("a task cannot wait for itself", err)
  end)
end)

describe("suspending where it cannot", function()
  it("raises in a luv callback, naming the function", function()
    local message
    local timer = uv.new_timer()
    timer:start(0, 0, function()
      local ok, err = pcall(sandlot.sleep, 1)
      message = not ok and err
      timer:close()
    end)
    sandlot.sleep(10)
    assert.matches("sandlot.sleep: cannot suspend outside a task", message)
    assert.matches("sandlot.spawn", message)
  end)

  it("raises in a plain coroutine", function()
    local co = coroutine.wrap(function()
      return pcall(sandlot.sleep, 1)
    end)
    local ok, err = co()
    assert.is_false(ok)
    assert.matches("not a sandlot task", err)
  end)

  it("raises across a C call boundary", function()
    local ok, err = pcall(table.sort, { 3, 1, 2 }, function(a, b)
      sandlot.sleep(1)
      return a < b
    end)
    assert.is_false(ok)
    assert.matches("sandlot.sleep: cannot suspend across a C call boundary", err)
  end)

  it("raises for task:wait outside a task but not for an ended task", function()
    local pending = sandlot.spawn(sandlot.sleep, 5)
    local ended = sandlot.spawn(function()
      return "x"
    end)
    ended:wait()
    local results = {}
    local timer = uv.new_timer()
    timer:start(0, 0, function()
      results.ended = ended:wait()
      results.ok, results.err = pcall(pending.wait, pending)
      timer:close()
    end)
    pending:wait()
    assert.are.equal("x", results.ended)
    assert.is_false(results.ok)
    assert.matches("task:wait: cannot suspend outside a task", results.err)
  end)
end)

describe("sandlot.await", function()
  it("returns what the callback passes to done", function()
    local err, stat = sandlot.await(function(done)
      uv.fs_stat("/", done)
    end)
    assert.is_nil(err)
    assert.are.equal("directory", stat.type)
  end)

  it("returns at once when done runs inside start", function()
    local a, b = sandlot.await(function(done)
      done("now", nil)
      done("ignored")
    end)
    assert.are.equal("now", a)
    assert.is_nil(b)
  end)

  it("ignores done after a cancellation", function()
    local saved_done
    local t = sandlot.spawn(function()
      return sandlot.await(function(done)
        saved_done = done
      end)
    end)
    sandlot.sleep(1)
    t:cancel()
    assert.are.equal("ECANCELED", select(3, t:wait()))
    saved_done("late")
    collectgarbage()
    assert.are.equal("cancelled", t.status)
  end)
end)
