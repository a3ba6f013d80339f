-- The Lua examples of README.md, run as written: each must succeed, print
-- what its "--> " comments show, and leave no sandbox running.
local sandboxes = require "sandboxes"
sandboxes.require_sandboxes()

local support = require "support"
local uv = require "luv"

local source_dir = os.getenv "SANDLOT_SOURCE_DIR" or "../.."
if not uv.fs_stat(source_dir .. "/deps/criu/sbin/criu") then
  io.stderr:write("SKIPPED: no CRIU in deps/criu for the snapshot example: run tools/deps.sh criu\n")
  os.exit(77)
end

--- The indented code blocks of the README that create sandboxes.
local function examples()
  local text = assert(sandboxes.read(source_dir .. "/README.md"))
  local blocks, current = {}, nil
  for line in (text .. "\n"):gmatch "(.-)\n" do
    if line:sub(1, 4) == "    " then
      current = current or {}
      current[#current + 1] = line:sub(5)
    elseif line == "" and current then
      current[#current + 1] = ""
    elseif current then
      blocks[#blocks + 1] = table.concat(current, "\n")
      current = nil
    end
  end
  local found = {}
  for _, block in ipairs(blocks) do
    if block:find("Sandbox.create", 1, true) then
      found[#found + 1] = block
    end
  end
  return found
end

--- The output that the "--> VALUE" comments of `code` show, one line each.
local function shown_output(code)
  local lines = {}
  for value in code:gmatch "%-%-> ([^\n]*)" do
    lines[#lines + 1] = value .. "\n"
  end
  return table.concat(lines)
end

local running = [[
local list = assert(require("sandlot").Sandbox.list())
for _, sb in ipairs(list) do
  if sb.state ~= "dead" then
    print(sb.id, sb.state)
  end
end]]

describe("README examples", function()
  local home, env

  before_each(function()
    home = support.temp_dir()
    env = support.environment { SANDLOT_HOME = home }
  end)

  after_each(function()
    local kill_running = running:gsub("print%(sb%.id, sb%.state%)", "sb:kill()")
    support.run_sandlot({ "-e", kill_running }, { env = env })
    support.remove_tree(home)
  end)

  local list = examples()

  it("include the two sandbox examples", function()
    assert.are.equal(2, #list)
  end)

  for i, code in ipairs(list) do
    it("run example " .. i .. " as written", function()
      -- Twice: an example that leaves a snapshot name taken fails then.
      for _ = 1, 2 do
        local status, out, err = support.run_sandlot({ "run", "-" }, { input = code, env = env })
        assert.are.equal(0, status, err)
        assert.are.equal(shown_output(code), out)
        local _, left = support.run_sandlot({ "-e", running }, { env = env })
        assert.are.equal("", left)
      end
    end)
  end
end)
