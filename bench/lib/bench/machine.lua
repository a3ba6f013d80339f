--- A description of the machine and the build a benchmark ran on.
local uv = require "luv"
local proc = require "bench.proc"

local M = {}

local function first_line(text)
  return text and text:match "[^\n]*" or nil
end

local function cpu_model()
  local text = proc.read_file "/proc/cpuinfo" or ""
  return text:match "model name%s*:%s*([^\n]+)" or "unknown CPU"
end

local function memory_total()
  local text = proc.read_file "/proc/meminfo" or ""
  local kib = tonumber(text:match "MemTotal:%s*(%d+)")
  return kib and ("%.1f GiB"):format(kib / 1048576) or "unknown"
end

--- The 1-minute load average, two decimals.
function M.load()
  return ("%.2f"):format(uv.loadavg())
end

--- Describe the machine. `paths` has criu (the binary), qemu (a program
-- name or path), source (the repository) and build_type.
function M.describe(paths)
  local uname = uv.os_uname()
  local criu = proc.output { paths.criu, "--version" }
  local qemu = proc.output { "/usr/bin/env", paths.qemu or "qemu-system-x86_64", "--version" }
  local commit = proc.output { "/usr/bin/env", "git", "-C", paths.source, "describe",
    "--always", "--dirty" }
  return {
    cpu = cpu_model(),
    cores = uv.available_parallelism(),
    memory = memory_total(),
    kernel = uname.release,
    os = "Debian " .. (first_line(proc.read_file "/etc/debian_version") or "unknown"),
    criu = criu and (criu:match "Version:%s*(%S+)" or first_line(criu)) or "not found",
    qemu = qemu and (qemu:match "version%s+(%S+)" or first_line(qemu)) or "not found",
    commit = commit and first_line(commit) or "unknown",
    build_type = paths.build_type or "unknown",
    load_start = M.load(),
  }
end

return M
