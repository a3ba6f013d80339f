-- The benchmark harness: sandlot against raw CRIU and raw QEMU (QMP),
-- side by side in one run.
--
--   build/sandlot run bench/run.lua [--quick | --smoke] [--only SUITE] [--out DIR]
--
-- `make bench` and `make bench-quick` run it as root after building. It
-- writes DIR/results.json and DIR/results.md (DIR defaults to bench/
-- in the build folder of the running sandlot) and prints the Markdown.
-- Temporary stores, images and forks live in DIR/work and are removed at
-- the end. --only runs one suite: sandbox, process, catalog or vm (the
-- files in bench/lib/bench/suites). Exit status: 0 when every row was
-- measured or is pending, 1
-- when a row failed, 2 on a usage error. Nothing here asserts a time.
local sandlot = require "sandlot"
local uv = require "luv"

local script_dir = arg[0]:match "^(.*)/[^/]*$" or "."
local source_dir = uv.fs_realpath(script_dir .. "/..")
package.path = source_dir .. "/bench/lib/?.lua;" .. package.path

local proc = require "bench.proc"
local report = require "bench.report"
local machine = require "bench.machine"
local core_side = require "bench.core_side"
local lua_side = require "bench.lua_side"
local raw_criu = require "bench.raw_criu"
local raw_qmp = require "bench.raw_qmp"

-- Runs per side, sandbox sizes and fork counts of each mode. The 1 GB
-- sandbox gets no 16 forks: 16 GiB of restored memory would crowd a
-- shared machine. MicroVMs get at most 4 forks and 100 MB of workload
-- data, because without KVM every guest runs under TCG.
local modes = {
  full = {
    runs = 11, warmup = 1, creates = 21, execs = 1000, catalog_rows = 100000, catalog_runs = 25,
    sizes = {
      { mib = 10, forks = { 1, 4, 16 }, memory_forks = 4 },
      { mib = 100, forks = { 1, 4, 16 }, memory_forks = 4 },
      { mib = 1024, forks = { 1, 4 }, memory_forks = 4 },
    },
    vm_creates = 5, vm_execs = 200, vm_forks = { 1, 4 },
    vm_sizes = { { mib = 10, memory = "256M" }, { mib = 100, memory = "512M" } },
  },
  quick = {
    runs = 5, warmup = 1, creates = 5, execs = 200, catalog_rows = 100000, catalog_runs = 11,
    sizes = {
      { mib = 10, forks = { 1, 4 }, memory_forks = 4 },
      { mib = 100, forks = { 1, 4 }, memory_forks = 4 },
    },
    vm_creates = 3, vm_execs = 50, vm_forks = { 1, 4 },
    vm_sizes = { { mib = 10, memory = "256M" } },
  },
  -- The ctest smoke entry: every part of the machinery once, tiny.
  smoke = {
    runs = 2, warmup = 0, creates = 2, execs = 5, catalog_rows = 10000, catalog_runs = 3,
    sizes = { { mib = 10, forks = { 1 }, memory_forks = 1 } },
    vm_creates = 1, vm_execs = 5, vm_forks = { 1 },
    vm_sizes = { { mib = 10, memory = "256M" } },
  },
}

-- The suites in the order they run, and whether they need root.
local suite_order = { "sandbox", "process", "catalog", "vm" }
local suites = { sandbox = true, process = true, catalog = false, vm = true }

local function usage(message)
  io.stderr:write("bench/run.lua: ", message, "\n",
    "usage: sandlot run bench/run.lua [--quick | --smoke] [--only SUITE] [--out DIR]\n")
  os.exit(2)
end

local function parse_args(args)
  local options = { mode = "full" }
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--quick" or a == "--smoke" then
      options.mode = a:sub(3)
    elseif a == "--out" and args[i + 1] then
      options.out = args[i + 1]
      i = i + 1
    elseif a == "--only" and suites[args[i + 1] or ""] ~= nil then
      options.only = args[i + 1]
      i = i + 1
    else
      usage(("invalid argument: %s"):format(a))
    end
    i = i + 1
  end
  return options
end

local function log(fmt, ...)
  io.stderr:write(os.date "%H:%M:%S ", "bench: ", fmt:format(...), "\n")
end

local function build_type(build_dir)
  local cache = proc.read_file(build_dir .. "/CMakeCache.txt") or ""
  return cache:match "CMAKE_BUILD_TYPE:STRING=([^\n]*)"
end

local function remove_tree(path)
  return proc.output { "/bin/rm", "-rf", "--one-file-system", path }
end

--- Kill what an earlier, interrupted run may have left in `work`.
local function clean_work(ctx)
  if not uv.fs_stat(ctx.work) then
    return
  end
  if uv.fs_stat(ctx.home) then
    local _, err = ctx.core:call "gc"
    if err then
      log("cleaning the store failed: %s", err)
    end
  end
  local dir = uv.fs_scandir(ctx.work)
  while dir do
    local name = uv.fs_scandir_next(dir)
    if name == nil then
      break
    end
    if name:match "^raw%-forks%-" then
      ctx.raw:destroy(ctx.work .. "/" .. name)
    elseif name:match "^raw%-vm%-forks%-" or name:match "^raw%-vm%-%d+$" then
      ctx.raw_qmp:destroy(ctx.work .. "/" .. name)
    end
  end
  remove_tree(ctx.work)
end

local function new_context(options, paths)
  local settings = modes[options.mode]
  local ctx = setmetatable({
    rows = {}, flags = {}, log = log,
    work = paths.out .. "/work", home = paths.out .. "/work/home",
    sandlot = uv.exepath(), source_dir = source_dir,
    workload_file = source_dir .. "/bench/workload.py",
    workload_script = assert(proc.read_file(source_dir .. "/bench/workload.py")),
  }, { __index = settings })
  ctx.core = core_side.new(paths.build .. "/bench/bench_core", ctx.home)
  ctx.raw = raw_criu.new(source_dir .. "/bench/raw_criu.sh", paths.criu)
  ctx.raw_qmp = raw_qmp.new(source_dir .. "/bench/raw_qmp.py")
  ctx.add = function(row)
    ctx.rows[#ctx.rows + 1] = row
  end
  return ctx
end

local function run_suite(ctx, name, needs_root)
  if needs_root and uv.getuid() ~= 0 then
    ctx.add(report.row { group = name, name = "all rows", unit = "ms", status = "failed",
      reason = "needs root (process sandboxes and CRIU)" })
    return
  end
  local suite = require("bench.suites." .. name)
  local ok, err = pcall(suite.run, ctx)
  if not ok then
    if err == sandlot.cancelled then
      error(err, 0)
    end
    ctx.add(report.row { group = name, name = "suite", unit = "ms", status = "failed",
      reason = tostring(err) })
  end
end

local function results_of(ctx, options, info, started_at)
  info.load_end = machine.load()
  return {
    schema = report.SCHEMA, mode = options.mode, started_at = started_at,
    finished_at = os.date "!%Y-%m-%d %H:%M:%S UTC",
    settings = {
      runs = ctx.runs, warmup = ctx.warmup, creates = ctx.creates, execs = ctx.execs,
      catalog_rows = ctx.catalog_rows, catalog_runs = ctx.catalog_runs,
      image_case = "every timed snapshot writes its images into page cache memory freed "
        .. "by the previous run's images (of the other side, same size)",
      criu_flags = ctx.flags,
    },
    machine = info, rows = ctx.rows,
  }
end

local function main(args)
  local options = parse_args(args)
  if options.mode == "smoke" and uv.getuid() ~= 0 then
    io.stderr:write("SKIPPED: the benchmark smoke run needs root for process sandboxes and CRIU\n")
    os.exit(77)
  end
  local build = uv.fs_realpath(uv.exepath():match "^(.*)/[^/]*$")
  local paths = { build = build, out = options.out or (build .. "/bench"), source = source_dir }
  -- The raw side runs the very binary the core runs.
  local criu = assert(proc.json { build .. "/bench/bench_core", "criu-path" })
  paths.criu = criu.path
  assert(uv.fs_mkdir(paths.out, 493) or uv.fs_stat(paths.out), "cannot create " .. paths.out)
  paths.out = uv.fs_realpath(paths.out)
  -- The guest kernel and base disks stay between runs (VM backend).
  if not os.getenv "SANDLOT_VM_CACHE" then
    uv.os_setenv("SANDLOT_VM_CACHE", paths.out .. "/vm-cache")
  end
  local ctx = new_context(options, paths)
  local started_at = os.date "!%Y-%m-%d %H:%M:%S UTC"
  local info = machine.describe { criu = paths.criu, source = source_dir,
    build_type = build_type(build) }
  log("%s run, load average %s; results go to %s", options.mode, info.load_start, paths.out)

  clean_work(ctx)
  assert(uv.fs_mkdir(ctx.work, 448))
  ctx.lua = lua_side.new(ctx.home)
  local ok, err = pcall(function()
    for _, name in ipairs(suite_order) do
      if options.only == nil or options.only == name then
        run_suite(ctx, name, suites[name])
      end
    end
  end)
  clean_work(ctx)
  if not ok then
    error(err, 0)
  end

  local results = results_of(ctx, options, info, started_at)
  local json_path = paths.out .. "/results.json"
  assert(report.write_file(json_path, report.json(results)))
  assert(report.decode(assert(proc.read_file(json_path))))
  local markdown = report.markdown(results)
  assert(report.write_file(paths.out .. "/results.md", markdown))
  io.write(markdown)
  local failed = 0
  for _, row in ipairs(ctx.rows) do
    if row.status == "failed" then
      log("failed: %s: %s: %s", row.group, row.name, row.reason)
      failed = failed + 1
    end
  end
  if failed > 0 then
    os.exit(1)
  end
end

main(arg)
