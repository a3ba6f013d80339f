--- Argument checks and fail tuples shared by the sandlot modules.
--
-- Wrong types and unknown option names are programmer errors and raise;
-- wrong values are expected failures and return a fail tuple.
local M = {}

--- nil, "ENAME: message", "ENAME"
function M.fail(name, fmt, ...)
  return nil, name .. ": " .. fmt:format(...), name
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
-- type name or a list of them). `level` is passed to error().
function M.arg(fname, position, value, expected, level)
  if not type_matches(value, expected) then
    error(("%s: argument %d must be a %s, got %s"):format(fname, position, type_names(expected),
      type(value)), level + 1)
  end
end

--- Raise on an option name that `allowed` (name -> expected type) does not
-- list, or an option of the wrong type. nil values are left out.
function M.options(fname, options, allowed, level)
  for key, value in pairs(options) do
    local expected = type(key) == "string" and allowed[key]
    if not expected then
      if type(key) == "string" then
        error(("%s: unknown option %q"):format(fname, key), level + 1)
      end
    elseif not type_matches(value, expected) then
      error(("%s: option %s must be a %s, got %s"):format(fname, key, type_names(expected),
        type(value)), level + 1)
    end
  end
end

--- Raise unless `self` is an object of `class` (a method called with a
-- dot instead of a colon, or on something else).
function M.self(fname, self, class)
  if getmetatable(self) ~= class then
    error(("%s: expected a %s object as self (call it with a colon), got %s"):format(fname,
      class.__name or "sandlot", type(self)), 3)
  end
end

return M
