-- The Lua examples of README.md, run as written: each must succeed, print
-- what its "--> " comments show, and leave no sandbox running. The VM
-- example runs only where qemu-system-x86_64 is installed.
local sandboxes = require "sandboxes"
sandboxes.require_sandboxes()

local support = require "support"
local uv = require "luv"

local has_qemu = support.run { "sh", "-c", "command -v qemu-system-x86_64" } == 0
-- The kernel and initramfs cache the VM tests share.
local vm_cache = (os.getenv "SANDLOT_BUILD_DIR" or "/tmp") .. "/vm-cache"

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
    env = support.environment { SANDLOT_HOME = home, SANDLOT_VM_CACHE = vm_cache }
  end)

  after_each(function()
    local kill_running = running:gsub("print%(sb%.id, sb%.state%)", "sb:kill()")
    support.run_sandlot({ "-e", kill_running }, { env = env })
    support.remove_tree(home)
  end)

  local list = examples()

  it("include the three sandbox examples", function()
    assert.are.equal(3, #list)
  end)

  for i, code in ipairs(list) do
    local vm = code:find('backend = "vm"', 1, true) ~= nil
    if vm and not has_qemu then
      io.stderr:write("SKIPPED: README example ", i, ": qemu-system-x86_64 is not installed\n")
    else
      it("run example " .. i .. " as written", function()
        -- Twice: an example that leaves a snapshot name taken fails then.
        for _ = 1, vm and 1 or 2 do
          local status, out, err = support.run_sandlot({ "run", "-" }, { input = code, env = env })
          assert.are.equal(0, status, err)
          local shown = shown_output(code)
          if shown ~= "" then
            assert.are.equal(shown, out)
          end
          -- auto_kill acts once the script's process has exited, so the
          -- sandboxes it covers may take a moment to end.
          local left
          sandboxes.eventually(function()
            left = select(2, support.run_sandlot({ "-e", running }, { env = env }))
            return left == ""
          end, "the example's sandboxes end", 30)
          assert.are.equal("", left)
        end
      end)
    end
  end
end)
