--- Files in sandboxes. Paths resolve inside the sandbox's root, as for
-- its own processes, so `..` and symlinks never reach a host file.
-- Contents are bytes (any Lua string); transfers above 1 MiB go in
-- chunks. All methods suspend.
local core = require "sandlot.core"
local check = require "sandlot.check"
local Sandbox = require "sandlot.sandbox"

local flags = core.file_flags

--- Raise unless `path` is a string. Return the EINVAL fail tuple when it
-- has a NUL byte, because C would cut it short on its way to the agent.
local function path_arg(fname, path, position)
  check.arg(fname, position or 1, path, "string")
  return check.text("path", path)
end

local function mode_of(fname, options)
  local mode = options.mode
  if mode == nil then
    return nil
  end
  if math.type(mode) ~= "integer" or mode < 0 or mode > 4095 then
    return nil, check.fail("EINVAL", "invalid mode: %s (expected 0 to 0o7777)", tostring(mode))
  end
  return mode
end

local write_options = { mode = "number", append = "boolean", parents = "boolean" }

--- Write `data` to `path`, replacing the file. Options: mode (permission
-- bits of a new file, default 0644), append (add to the end instead),
-- parents (create missing folders).
function Sandbox:write_file(path, data, options)
  check.self("sandbox:write_file", self, Sandbox)
  local _, bad_path, bad_name = path_arg("sandbox:write_file", path)
  if bad_path then
    return nil, bad_path, bad_name
  end
  check.arg("sandbox:write_file", 2, data, "string")
  options = options or {}
  check.arg("sandbox:write_file", 3, options, "table")
  check.options("sandbox:write_file", options, write_options)
  local mode, _, message, name = mode_of("sandbox:write_file", options)
  if message then
    return nil, message, name
  end
  local bits = (options.append and flags.append or 0) | (options.parents and flags.parents or 0)
  local agent
  agent, message, name = self:_connect("sandbox:write_file")
  if not agent then
    return nil, message, name
  end
  local ok, kind
  ok, message, name, kind = agent:write_file(path, data, mode or 420, bits)
  if not ok then
    return self:_failed(message, name, kind)
  end
  return true
end

--- Bytes of a file that sandbox:read_file accepts when max_size is not
-- given: 64 MiB.
local MAX_SIZE = 64 * 1024 * 1024

--- The content of the file at `path`; ENOENT when it does not exist.
-- Options: max_size (bytes, default MAX_SIZE, math.huge for any size); a
-- larger file fails with EFBIG before its content is transferred.
function Sandbox:read_file(path, options)
  check.self("sandbox:read_file", self, Sandbox)
  local _, bad_path, bad_name = path_arg("sandbox:read_file", path)
  if bad_path then
    return nil, bad_path, bad_name
  end
  options = options or {}
  check.arg("sandbox:read_file", 2, options, "table")
  check.options("sandbox:read_file", options, { max_size = "number" })
  local max = options.max_size or MAX_SIZE
  if max == math.huge then
    max = 0
  elseif math.tointeger(max) == nil or max <= 0 then
    return check.fail("EINVAL", "invalid max_size: %s (expected bytes > 0, or math.huge for any size)",
      tostring(max))
  end
  max = math.tointeger(max)
  local agent, message, name = self:_connect("sandbox:read_file")
  if not agent then
    return nil, message, name
  end
  local data, kind
  data, message, name, kind = agent:read_file(path, max)
  if data == nil and kind == "connection" then
    agent, message, name = self:_connect("sandbox:read_file")
    if not agent then
      return nil, message, name
    end
    data, message, name, kind = agent:read_file(path, max)
  end
  if data == nil then
    return self:_failed(message, name, kind)
  end
  return data
end

local function describe(fields)
  return {
    name = fields.name,
    type = fields.type,
    size = fields.size,
    mode = fields.mode,
    mtime = fields.mtime_ms and fields.mtime_ms / 1000,
    link_target = fields.link_target,
  }
end

--- The entries of the folder at `path`, sorted by name: {name, type
-- ("file", "dir", "symlink" or "other"), size, mode, mtime (seconds)}.
local function list_dir(self, path)
  check.self("sandbox:list", self, Sandbox)
  local _, bad_path, bad_name = path_arg("sandbox:list", path)
  if bad_path then
    return nil, bad_path, bad_name
  end
  local reply, message, name = self:_call("sandbox:list", "list_dir", { path = path })
  if not reply then
    return nil, message, name
  end
  local entries = {}
  for _, event in ipairs(reply.events or {}) do
    entries[#entries + 1] = describe(event)
  end
  table.sort(entries, function(a, b)
    return a.name < b.name
  end)
  return entries
end

--- Sandbox.list{...} lists sandboxes; sb:list(path) lists a folder.
function Sandbox.list(first, second)
  if getmetatable(first) == Sandbox then
    return list_dir(first, second)
  end
  return Sandbox._list_sandboxes(first)
end

--- {type, size, mode, mtime, link_target} of `path`. Options: follow
-- (default true; false describes a symlink itself).
function Sandbox:stat(path, options)
  check.self("sandbox:stat", self, Sandbox)
  local _, bad_path, bad_name = path_arg("sandbox:stat", path)
  if bad_path then
    return nil, bad_path, bad_name
  end
  options = options or {}
  check.options("sandbox:stat", options, { follow = "boolean" })
  local fields = { path = path }
  if options.follow == false then
    fields.flags = flags.nofollow
  end
  local reply, message, name = self:_call("sandbox:stat", "stat", fields)
  if not reply then
    return nil, message, name
  end
  return describe(reply)
end

--- Create the folder `path`. Options: parents (create missing parents
-- and accept an existing folder), mode (default 0755).
function Sandbox:mkdir(path, options)
  check.self("sandbox:mkdir", self, Sandbox)
  local _, bad_path, bad_name = path_arg("sandbox:mkdir", path)
  if bad_path then
    return nil, bad_path, bad_name
  end
  options = options or {}
  check.options("sandbox:mkdir", options, { parents = "boolean", mode = "number" })
  local mode, _, message, name = mode_of("sandbox:mkdir", options)
  if message then
    return nil, message, name
  end
  local fields = { path = path, mode = mode or 493, flags = options.parents and flags.parents or 0 }
  local reply
  reply, message, name = self:_call("sandbox:mkdir", "mkdir", fields)
  if not reply then
    return nil, message, name
  end
  return true
end

--- Remove the file or empty folder `path`. Options: recursive (a folder
-- with its contents).
function Sandbox:remove(path, options)
  check.self("sandbox:remove", self, Sandbox)
  local _, bad_path, bad_name = path_arg("sandbox:remove", path)
  if bad_path then
    return nil, bad_path, bad_name
  end
  options = options or {}
  check.options("sandbox:remove", options, { recursive = "boolean" })
  local fields = { path = path, flags = options.recursive and flags.recursive or 0 }
  local reply, message, name = self:_call("sandbox:remove", "remove", fields)
  if not reply then
    return nil, message, name
  end
  return true
end

--- Rename `from` to `to`. Options: replace (default true; false fails
-- with EEXIST when `to` exists).
function Sandbox:rename(from, to, options)
  check.self("sandbox:rename", self, Sandbox)
  local _, bad_path, bad_name = path_arg("sandbox:rename", from, 1)
  if not bad_path then
    _, bad_path, bad_name = path_arg("sandbox:rename", to, 2)
  end
  if bad_path then
    return nil, bad_path, bad_name
  end
  options = options or {}
  check.options("sandbox:rename", options, { replace = "boolean" })
  local fields = { path = from, new_path = to, flags = options.replace == false and flags.noreplace or 0 }
  local reply, message, name = self:_call("sandbox:rename", "rename", fields)
  if not reply then
    return nil, message, name
  end
  return true
end

return Sandbox
