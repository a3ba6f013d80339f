--- Readable text for any Lua value, for the REPL and for messages.
--
-- Tables print nested with sorted keys (numbers, then strings, then other
-- types), the array part first without keys. A table seen again on the
-- current path prints as <cycle>; beyond the depth limit a table prints
-- as {...}. Strings are quoted with %q, so control characters stay visible.

local DEFAULT_DEPTH = 4
local INDENT = "  "

local type_order = { number = 1, string = 2, boolean = 3 }

local function compare_keys(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    return (type_order[ta] or 9) < (type_order[tb] or 9) or
      ((type_order[ta] or 9) == (type_order[tb] or 9) and ta < tb)
  end
  if ta == "number" or ta == "string" then
    return a < b
  end
  return tostring(a) < tostring(b)
end

local function is_identifier(key)
  return type(key) == "string" and key:match "^[%a_][%w_]*$" ~= nil
end

local function format_scalar(value)
  if type(value) == "string" then
    return (("%q"):format(value):gsub("\\\n", "\\n"))
  end
  if math.type(value) == "float" and value == math.floor(value) and value == value
    and math.abs(value) < 2 ^ 53 then
    return ("%.1f"):format(value)
  end
  return tostring(value)
end

local format

local function format_key(key, state)
  if is_identifier(key) then
    return key
  end
  return "[" .. format(key, state, 1) .. "]"
end

local function sorted_keys(t, array_length)
  local keys = {}
  for key in pairs(t) do
    if not (math.type(key) == "integer" and key >= 1 and key <= array_length) then
      keys[#keys + 1] = key
    end
  end
  table.sort(keys, compare_keys)
  return keys
end

local function format_table(t, state, level)
  if state.path[t] then
    return "<cycle>"
  end
  if level > state.depth then
    return "{...}"
  end
  local mt = getmetatable(t)
  if mt and mt.__tostring then
    return tostring(t)
  end
  state.path[t] = true
  local items = {}
  local array_length = #t
  for i = 1, array_length do
    items[#items + 1] = format(t[i], state, level + 1)
  end
  for _, key in ipairs(sorted_keys(t, array_length)) do
    items[#items + 1] = format_key(key, state) .. " = " .. format(t[key], state, level + 1)
  end
  state.path[t] = nil
  if #items == 0 then
    return "{}"
  end
  local one_line = "{ " .. table.concat(items, ", ") .. " }"
  if #one_line <= 72 and not one_line:find "\n" then
    return one_line
  end
  local pad = INDENT:rep(level)
  return "{\n" .. pad .. table.concat(items, ",\n" .. pad) .. "\n" .. INDENT:rep(level - 1) .. "}"
end

function format(value, state, level)
  if type(value) == "table" then
    return format_table(value, state, level)
  end
  return format_scalar(value)
end

--- Return the text for value; options.depth limits nesting (default 4).
local function inspect(value, options)
  local depth = options and options.depth or DEFAULT_DEPTH
  return format(value, { path = {}, depth = depth }, 1)
end

return inspect
