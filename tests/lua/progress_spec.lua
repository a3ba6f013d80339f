-- Template build output, which the core reports from pool threads, on
-- its way to a Lua function or to stderr.
local sandlot = require "sandlot"
local core = require "sandlot.core"
local support = require "support"
local testing = core.testing

describe("template progress", function()
  after_each(function()
    core.on_template_progress(nil)
  end)

  it("reaches the Lua handler line by line, in order", function()
    local lines = {}
    core.on_template_progress(function(line)
      lines[#lines + 1] = line
    end)
    assert.is_true(testing.pool_progress "Get:1 http://deb.debian.org bookworm InRelease\nUnpacking python3")
    for _ = 1, 500 do
      if #lines == 2 then
        break
      end
      sandlot.sleep(2)
    end
    assert.are.same({ "Get:1 http://deb.debian.org bookworm InRelease", "Unpacking python3" }, lines)
  end)

  it("goes to stderr without a handler", function()
    local code, out, err = support.run_sandlot {
      "-e", "require('sandlot.core').testing.pool_progress('I: extracting archives')",
    }
    assert.are.equal(0, code)
    assert.are.equal("", out)
    assert.are.equal("sandlot: template: I: extracting archives\n", err)
  end)

  it("reports a failing handler and goes on", function()
    local code, out, err = support.run_sandlot {
      "-e", [[
        local core = require "sandlot.core"
        core.on_template_progress(function(line) error("handler broke on " .. line) end)
        core.testing.pool_progress("one")
        require("sandlot").sleep(50)
        print("still running")
      ]],
    }
    assert.are.equal(0, code)
    assert.are.equal("still running\n", out)
    assert.matches("sandlot: template progress handler failed: .*handler broke on one", err)
  end)
end)
