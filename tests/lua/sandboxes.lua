-- Helpers for specs that run real process sandboxes: a capability check
-- that skips the spec file, a fresh store per file, and checks that a
-- sandbox left nothing on the host.
local sandlot = require "sandlot"
local support = require "support"
local uv = require "luv"

local M = {}

local function read(path)
  local file = io.open(path, "rb")
  if file == nil then
    return nil
  end
  local text = file:read "a"
  file:close()
  return text
end
M.read = read

--- What this process lacks to run process sandboxes (root, overlayfs,
-- and the v1 freezer, memory and pids cgroups or cgroup v2), or nil.
function M.missing_capability()
  if uv.getuid() ~= 0 then
    return "process sandboxes need root"
  elseif not (read "/proc/filesystems" or ""):find "overlay" then
    return "the kernel has no overlayfs"
  elseif not uv.fs_stat "/sys/fs/cgroup/freezer" and not uv.fs_stat "/sys/fs/cgroup/cgroup.controllers"
    and not uv.fs_stat "/sys/fs/cgroup/unified/cgroup.controllers" then
    return "no freezer cgroup (v1) and no cgroup v2"
  end
end

--- Exit 77 (skipped) unless this process can run process sandboxes.
-- Call it at the top of a spec file.
function M.require_sandboxes()
  local missing = M.missing_capability()
  if missing then
    io.stderr:write("SKIPPED: ", missing, "\n")
    os.exit(77)
  end
end

--- Use a fresh store under /tmp for this spec file; returns its path.
-- The base template comes from the machine-wide cache
-- ($SANDLOT_TEMPLATE_CACHE), built there on first use.
function M.fresh_store()
  local home = support.temp_dir()
  assert(sandlot.set_home(home))
  return home
end

--- Kill what a spec left running in the store, then remove it.
function M.remove_store(home)
  local list = sandlot.Sandbox.list { state = "running" } or {}
  for _, state in ipairs { "frozen", "creating", "paused" } do
    for _, sb in ipairs(sandlot.Sandbox.list { state = state } or {}) do
      list[#list + 1] = sb
    end
  end
  for _, sb in ipairs(list) do
    sb:kill()
  end
  support.remove_tree(home)
end

--- Suspend until condition() is true, checking every 20 ms for up to
-- `seconds` (default 10); raises with `what` when it never is.
function M.eventually(condition, what, seconds)
  local deadline = uv.hrtime() + (seconds or 10) * 1e9
  while uv.hrtime() < deadline do
    if condition() then
      return
    end
    sandlot.sleep(20)
  end
  error("never happened: " .. what, 2)
end

local function mounted_below(prefix)
  for line in (read "/proc/self/mountinfo" or ""):gmatch "[^\n]+" do
    if line:find(prefix, 1, true) then
      return line
    end
  end
end

--- The pids of processes whose command line contains every word.
function M.pids_with(...)
  local words = { ... }
  local found = {}
  local scan = uv.fs_scandir "/proc"
  while scan do
    local name = uv.fs_scandir_next(scan)
    if name == nil then
      break
    end
    if name:match "^%d+$" then
      local cmdline = (read("/proc/" .. name .. "/cmdline") or ""):gsub("%z", " ")
      local all = cmdline ~= ""
      for _, word in ipairs(words) do
        all = all and cmdline:find(word, 1, true) ~= nil
      end
      if all then
        found[#found + 1] = tonumber(name)
      end
    end
  end
  return found
end

--- nil when nothing of the sandbox is left on the host (mounts below its
-- folder, cgroups, its PID 1, its monitor); otherwise what is left.
function M.leftover(home, info)
  local dir = home .. "/sandboxes/" .. info.id .. "/"
  local mount = mounted_below(dir)
  if mount then
    return "mount: " .. mount
  end
  for controller, path in pairs(info.cgroups or {}) do
    if uv.fs_stat(path) then
      return ("cgroup %s: %s"):format(controller, path)
    end
  end
  if info.init_pid and info.init_pid > 0 then
    local cmdline = read("/proc/" .. info.init_pid .. "/cmdline") or ""
    if cmdline:find("sandlot", 1, true) then
      return "PID 1 still runs: " .. info.init_pid
    end
  end
  if #M.pids_with("sandlot-monitor", info.id) > 0 then
    return "the monitor still runs"
  end
end

--- Wait until the sandbox left nothing behind (its monitor cleans up
-- before it exits); returns nil or what is still there after 5 s.
function M.wait_clean(home, info)
  local left
  local deadline = uv.hrtime() + 5e9
  repeat
    left = M.leftover(home, info)
    if left == nil then
      return nil
    end
    sandlot.sleep(20)
  until uv.hrtime() > deadline
  return left
end

--- Files an ended VM sandbox keeps in its folder for a look afterwards.
-- Anything else (a socket, a lock, a disk, QEMU's pid file) is a leak.
local vm_kept = {
  ["vm.json"] = true, ["vm-monitor.json"] = true, ["console.log"] = true,
  end_reason = true, ["op.lock"] = true, log = true,
}

--- What an ended VM sandbox left behind, or nil when it left nothing. It
-- leaves nothing when no QEMU or monitor process runs for it, nothing is
-- mounted below its folder, its live RAM file is gone and its folder
-- has only the files of vm_kept.
function M.vm_leftover(home, info)
  local dir = home .. "/sandboxes/" .. info.id .. "/"
  local mount = mounted_below(dir)
  if mount then
    return "mount: " .. mount
  end
  if #M.pids_with("qemu-system", dir) > 0 then
    return "QEMU still runs"
  end
  if #M.pids_with("sandlot-monitor", info.id) > 0 then
    return "the monitor still runs"
  end
  local ram_dir = uv.os_getenv "SANDLOT_VM_RAM_DIR" or "/dev/shm"
  local scan = uv.fs_scandir(ram_dir)
  while scan do
    local name = uv.fs_scandir_next(scan)
    if name == nil then
      break
    end
    if name:sub(-#info.id - 5) == "-" .. info.id .. ".ram" then
      return "live RAM file: " .. ram_dir .. "/" .. name
    end
  end
  scan = uv.fs_scandir(dir)
  while scan do
    local name = uv.fs_scandir_next(scan)
    if name == nil then
      break
    end
    if not vm_kept[name] then
      return "file: " .. dir .. name
    end
  end
end

--- Wait until an ended VM sandbox left nothing behind (vm_leftover);
-- returns nil or what is still there after 10 s.
function M.wait_vm_clean(home, info)
  local left
  local deadline = uv.hrtime() + 10e9
  repeat
    left = M.vm_leftover(home, info)
    if left == nil then
      return nil
    end
    sandlot.sleep(20)
  until uv.hrtime() > deadline
  return left
end

--- The command of a process that keeps a running total in memory only:
-- it reads a number per line on stdin and prints the new total.
M.adder = [[python3 -u -c "
import sys
total = 0
for line in sys.stdin:
    total += int(line)
    print(total)
"]]

--- Send `n` to an adder process and return the total it prints.
function M.add(process, n)
  assert(process:write(n .. "\n"))
  local line, message = process:read_line()
  assert(line, message)
  return tonumber(line)
end

return M
