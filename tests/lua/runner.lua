-- Run one spec file with busted inside the sandlot host:
--   sandlot run tests/lua/runner.lua tests/lua/NAME_spec.lua
-- The runner script is the main task, so `it` blocks run on the host's loop
-- and may call suspending functions. Busted ends by calling os.exit, which
-- would skip the host's shutdown. The runner catches that call instead, so
-- every spec run also exercises the shutdown under the sanitizers. With
-- standalone = false, busted calls os.exit only when specs failed.
--
-- A spec file that lacks a capability calls os.exit(77) while it loads;
-- the host then exits 77 (skipped) after its normal shutdown.
local core = require "sandlot.core"

local exit_marker = {}
local exit_status
local skipped = false
local real_exit = os.exit

os.exit = function(status)
  if status == 77 then
    skipped = true
  end
  exit_status = status
  error(exit_marker, 0)
end
local ok, err = pcall(require "busted.runner", { standalone = false, output = "gtest" })
os.exit = real_exit

-- Tasks a spec left behind must not keep the host alive.
core.cancel_all()

if skipped then
  core.set_exit_status(77)
  return
end
if not ok and err ~= exit_marker then
  error(err, 0)
end
if exit_status ~= nil and exit_status ~= 0 and exit_status ~= true then
  error(("%s: specs failed"):format(arg[1]), 0)
end
