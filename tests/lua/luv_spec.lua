local sandlot = require "sandlot"
local uv = require "luv"

describe("luv in the host", function()
  it("is the binding the host opened", function()
    assert.are.equal(package.loaded.luv, uv)
    assert.are.equal(uv, require "luv")
  end)

  it("runs callbacks while a task sleeps", function()
    local fired = false
    local timer = uv.new_timer()
    timer:start(1, 0, function()
      fired = true
      timer:close()
    end)
    sandlot.sleep(20)
    assert.is_true(fired)
  end)

  it("keeps running callbacks after one raised", function()
    local later = false
    local bad = uv.new_timer()
    bad:start(0, 0, function()
      bad:close()
      error("raised in a luv callback")
    end)
    local good = uv.new_timer()
    good:start(5, 0, function()
      later = true
      good:close()
    end)
    sandlot.sleep(20)
    assert.is_true(later)
  end)

  it("refuses to run, walk or close the host's loop", function()
    assert.has_error(function()
      uv.run()
    end, "uv.run: the sandlot host runs the loop; suspend a task with sandlot.sleep or task:wait instead")
    assert.has_error(function()
      uv.walk(print)
    end)
    assert.has_error(function()
      uv.loop_close()
    end)
  end)
end)
