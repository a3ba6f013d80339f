local inspect = require("sandlot").inspect

describe("sandlot.inspect", function()
  it("prints scalars", function()
    assert.are.equal("42", inspect(42))
    assert.are.equal("1.5", inspect(1.5))
    assert.are.equal("2.0", inspect(2.0))
    assert.are.equal("true", inspect(true))
    assert.are.equal("nil", inspect(nil))
    assert.are.equal('"a\\nb"', inspect("a\nb"))
  end)

  it("prints the array part first, then sorted keys", function()
    assert.are.equal('{ "x", "y", [10] = 1, a = 2, b = 3 }',
      inspect { "x", "y", b = 3, a = 2, [10] = 1 })
  end)

  it("quotes keys that are not identifiers", function()
    assert.are.equal('{ ["two words"] = 1, [true] = 2 }', inspect { ["two words"] = 1, [true] = 2 })
  end)

  it("prints nested tables", function()
    assert.are.equal("{ a = { b = { c = {} } } }", inspect { a = { b = { c = {} } } })
  end)

  it("marks cycles", function()
    local t = { name = "loop" }
    t.self = t
    assert.are.equal('{ name = "loop", self = <cycle> }', inspect(t))
  end)

  it("prints a table seen twice outside a cycle in full", function()
    local shared = { 1 }
    assert.are.equal("{ a = { 1 }, b = { 1 } }", inspect { a = shared, b = shared })
  end)

  it("stops at the depth limit", function()
    local deep = { l1 = { l2 = { l3 = { l4 = { l5 = {} } } } } }
    assert.are.equal("{ l1 = { l2 = { l3 = { l4 = {...} } } } }", inspect(deep))
    assert.are.equal("{ l1 = {...} }", inspect(deep, { depth = 1 }))
  end)

  it("breaks long tables over lines", function()
    local t = {}
    for i = 1, 30 do
      t[i] = i * 1000
    end
    local text = inspect(t)
    assert.matches("^{\n  1000,\n  2000,\n", text)
    assert.matches("30000\n}$", text)
  end)

  it("uses __tostring when a table has one", function()
    local t = setmetatable({}, {
      __tostring = function()
        return "custom"
      end,
    })
    assert.are.equal("{ custom }", inspect { t })
  end)
end)
