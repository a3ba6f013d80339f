--- MicroVM rows: the process sandbox rows for QEMU microvm sandboxes,
-- against QMP commands sent by a plain script.
local report = require "bench.report"

local M = {}

local GROUP = "MicroVM sandboxes"
local NO_VM = "needs the VM backend on main (branch vm)"

local rows = {
  { "snapshot: pause seen by the workload", "ms" }, { "snapshot total time", "ms" },
  { "image size", "MiB" }, { "one fork until the first exec result", "ms" },
  { "4 forks started together", "ms" }, { "memory per fork", "MiB" }, { "pause", "ms" },
  { "resume until the first exec result", "ms" }, { "rollback", "ms" },
  { "create until the first exec result", "ms" }, { "exec round trip", "ms" },
}

function M.run(ctx)
  for _, row in ipairs(rows) do
    ctx.add(report.row {
      group = GROUP, name = row[1], unit = row[2], status = "pending", reason = NO_VM,
      baseline_name = "raw QEMU (QMP)",
    })
  end
end

return M
