--- Argument checks and fail tuples shared by the sandlot modules.
--
-- Wrong types and unknown option names are programmer errors and raise;
-- wrong values are expected failures and return a fail tuple.
local core = require "sandlot.core"

local M = {}

--- Raise `message` as an error at the first caller outside sandlot's Lua
-- modules, so it points at the user's line however deep the module's
-- call chain is (tail calls included).
M.raise = core.raise

--- nil, "ENAME: message", "ENAME"
function M.fail(name, fmt, ...)
  return nil, name .. ": " .. fmt:format(...), name
end

local escapes = { ["\0"] = "\\0", ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r", ['"'] = '\\"',
  ["\\"] = "\\\\" }

--- Format the string `value` for a message in double quotes, with C
-- escapes (\0, \n, \xHH) for control bytes, quotes and backslashes.
function M.quote(value)
  return '"' .. value:gsub('[%c%z"\\]', function(byte)
    return escapes[byte] or ("\\x%02x"):format(byte:byte())
  end) .. '"'
end

--- Format the string `value` for a message as sl_subject() in
-- core/error.h does. A value that is not empty and has only printable
-- characters other than space, quote and backslash stays as it is.
-- Others are quoted as M.quote does.
function M.subject(value)
  if value ~= "" and not value:find '[%c %z"\\]' then
    return value
  end
  return M.quote(value)
end

--- Check that the string `value` is in the list `names`. Returns nil when
-- it is, else the EINVAL fail tuple that names `what` and lists `names`.
function M.one_of(what, value, names)
  for _, name in ipairs(names) do
    if value == name then
      return nil
    end
  end
  return M.fail("EINVAL", "invalid %s: %s (expected one of: %s)", what, M.quote(value),
    table.concat(names, ", "))
end

--- nil when the string `value` can pass through C (it has no NUL byte),
-- else the EINVAL fail tuple naming `what` and the value.
function M.text(what, value)
  if value:find("\0", 1, true) then
    return M.fail("EINVAL", "invalid %s: %s (contains a NUL byte)", what, M.subject(value))
  end
end

--- Like M.text for a name in NAME=value pairs: also rejects an empty
-- name and one with "=".
function M.pair_name(what, name)
  if name == "" or name:find("=", 1, true) then
    return M.fail("EINVAL", "invalid %s: %s (expected a name without \"=\")", what, M.subject(name))
  end
  return M.text(what, name)
end

local function type_matches(value, expected)
  if type(expected) == "table" then
    for _, name in ipairs(expected) do
      if type(value) == name then
        return true
      end
    end
    return false
  end
  return type(value) == expected
end

local function type_names(expected)
  if type(expected) == "table" then
    return table.concat(expected, " or ")
  end
  return expected
end

--- Raise unless argument `position` of `fname` has the expected type (a
-- type name or a list of them).
function M.arg(fname, position, value, expected)
  if not type_matches(value, expected) then
    M.raise(("%s: argument %d must be a %s, got %s"):format(fname, position, type_names(expected),
      type(value)))
  end
end

--- Raise on an option name that `allowed` (name -> expected type) does not
-- list, or an option of the wrong type. nil values are left out.
function M.options(fname, options, allowed)
  for key, value in pairs(options) do
    local expected = type(key) == "string" and allowed[key]
    if not expected then
      if type(key) == "string" then
        M.raise(("%s: unknown option %q"):format(fname, key))
      end
    elseif not type_matches(value, expected) then
      M.raise(("%s: option %s must be a %s, got %s"):format(fname, key, type_names(expected),
        type(value)))
    end
  end
end

--- Raise unless `self` is an object of `class` (a method called with a
-- dot instead of a colon, or on something else).
function M.self(fname, self, class)
  if getmetatable(self) ~= class then
    M.raise(("%s: expected a %s object as self (call it with a colon), got %s"):format(fname,
      class.__name or "sandlot", type(self)))
  end
end

return M
