local repl = require "sandlot.repl"

describe("repl.compile", function()
  it("returns expression values", function()
    assert.are.equal(3, repl.compile("1 + 2")())
  end)

  it("accepts =expr", function()
    local a, b = repl.compile("= 1, 2")()
    assert.are.equal(1, a)
    assert.are.equal(2, b)
  end)

  it("compiles statements", function()
    assert.is_function(repl.compile("x_from_repl_spec = 1"))
  end)

  it("reports incomplete chunks", function()
    local fn, reason = repl.compile("function f()")
    assert.is_nil(fn)
    assert.are.equal("incomplete", reason)
    assert.are.equal("incomplete", select(2, repl.compile("t = {1,")))
    assert.is_function(repl.compile("function f()\n  return 1\nend"))
  end)

  it("reports syntax errors", function()
    local fn, err = repl.compile("x = = 1")
    assert.is_nil(fn)
    assert.matches("^stdin:1: unexpected symbol near '='", err)
  end)
end)

describe("repl.format", function()
  it("prints strings raw and other values through inspect", function()
    assert.are.equal("text\t{ a = 1 }\tnil",
      repl.format { "text", { a = 1 }, nil, n = 3 })
  end)
end)
