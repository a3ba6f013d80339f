-- File methods of sandbox objects against a real sandbox: binary round
-- trips, folders, errors, and paths that try to leave the sandbox.
local sandboxes = require "sandboxes"
sandboxes.require_sandboxes()

local sandlot = require "sandlot"
local support = require "support"
local Sandbox = sandlot.Sandbox

local home, sb, outside

setup(function()
  home = sandboxes.fresh_store()
  sb = assert(Sandbox.create { cwd = "/work" })
  -- A host file that no path inside the sandbox may reach.
  outside = support.temp_dir()
  local file = assert(io.open(outside .. "/secret", "w"))
  file:write "host secret\n"
  file:close()
end)

teardown(function()
  if outside then
    support.remove_tree(outside)
  end
  sandboxes.remove_store(home)
end)

local function all_bytes()
  local bytes = {}
  for i = 0, 255 do
    bytes[#bytes + 1] = string.char(i)
  end
  return table.concat(bytes)
end

--- `size` pseudo-random bytes (xorshift), the same for the same seed.
local function random_bytes(size, seed)
  local state = seed
  local parts = {}
  for i = 1, size // 4 do
    state = state ~ (state << 13) & 0xffffffff
    state = state ~ (state >> 17)
    state = state ~ (state << 5) & 0xffffffff
    parts[i] = string.pack("<I4", state)
  end
  return table.concat(parts) .. ("x"):rep(size % 4)
end

describe("files", function()
  it("round-trip every byte value", function()
    local data = all_bytes()
    assert.is_true(sb:write_file("/work/bytes.bin", data, { parents = true }))
    assert.are.equal(data, sb:read_file "/work/bytes.bin")
    local r = assert(sb:exec "od -An -tx1 /work/bytes.bin | tr -d ' \\n' | head -c 18")
    assert.are.equal("000102030405060708", r.stdout)
    assert.are.equal(256, assert(sb:stat "/work/bytes.bin").size)
  end)

  it("round-trip a few megabytes in chunks", function()
    local data = random_bytes(3 * 1024 * 1024 + 17, 12345)
    assert.is_true(sb:write_file("/work/big.bin", data))
    local back = assert(sb:read_file "/work/big.bin")
    assert.are.equal(#data, #back)
    assert.is_true(data == back)
    local r = assert(sb:exec "sha256sum /work/big.bin")
    assert.are.equal(64, #r.stdout:match "^(%x+)")
    assert.are.equal("", assert(sb:write_file("/work/empty", "") and sb:read_file "/work/empty"))
  end)

  it("append, set modes and make parents", function()
    assert(sb:write_file("/work/log.txt", "one\n"))
    assert(sb:write_file("/work/log.txt", "two\n", { append = true }))
    assert.are.equal("one\ntwo\n", sb:read_file "/work/log.txt")
    assert(sb:write_file("/work/log.txt", "fresh\n"))
    assert.are.equal("fresh\n", sb:read_file "/work/log.txt")
    assert(sb:write_file("/work/script.sh", "#!/bin/sh\necho ran\n", { mode = tonumber("755", 8) }))
    assert.are.equal(tonumber("755", 8), assert(sb:stat "/work/script.sh").mode)
    assert.are.equal("ran\n", assert(sb:exec { "/work/script.sh" }).stdout)
    assert(sb:write_file("/work/deep/er/file", "x", { parents = true }))
    assert.are.equal("dir", assert(sb:stat "/work/deep/er").type)
    local ok, message, name = sb:write_file("/work/absent/file", "x")
    assert.is_nil(ok)
    assert.are.equal("ENOENT", name)
    assert.matches("^ENOENT: ", message)
    ok, _, name = sb:write_file("/work/x", "y", { mode = 99999 })
    assert.is_nil(ok)
    assert.are.equal("EINVAL", name)
    assert.has_error(function() sb:write_file("/work/x", 42) end)
    assert.has_error(function() sb:write_file("/work/x", "y", { apend = true }) end)
  end)

  it("report missing files with ENOENT", function()
    local data, message, name = sb:read_file "/work/no-such-file"
    assert.is_nil(data)
    assert.are.equal("ENOENT: no such file: /work/no-such-file", message)
    assert.are.equal("ENOENT", name)
    local _, _, stat_name = sb:stat "/nowhere"
    assert.are.equal("ENOENT", stat_name)
    local _, list_message = sb:list "/nowhere"
    assert.are.equal("ENOENT: no such file: /nowhere", list_message)
    local _, _, dir_name = sb:read_file "/work"
    assert.are.equal("EISDIR", dir_name)
  end)

  it("name a missing parent directory and the fix", function()
    local hint = " (a parent directory is missing: pass parents = true to create it)"
    local ok, message, name = sb:write_file("/work/d1/d2/f", "x")
    assert.is_nil(ok)
    assert.are.equal("ENOENT", name)
    assert.are.equal("ENOENT: no such file or directory: /work/d1/d2/f" .. hint, message)
    ok, message = sb:mkdir "/work/d1/d2"
    assert.is_nil(ok)
    assert.are.equal("ENOENT: no such file or directory: /work/d1/d2" .. hint, message)
    assert(sb:write_file("/work/d1/d2/f", "x", { parents = true }))
    -- Appending to a missing file in an existing directory creates it.
    assert(sb:write_file("/work/d1/d2/g", "y", { append = true }))
    assert.are.equal("y", sb:read_file "/work/d1/d2/g")
  end)

  it("list, stat, mkdir, remove and rename", function()
    assert(sb:mkdir "/work/tree")
    local _, _, name = sb:mkdir "/work/tree"
    assert.are.equal("EEXIST", name)
    assert(sb:mkdir("/work/tree/a/b", { parents = true }))
    assert(sb:mkdir("/work/tree/a/b", { parents = true }))
    assert(sb:write_file("/work/tree/file.txt", "12345"))
    assert(sb:exec "ln -s file.txt /work/tree/link")
    local list = assert(sb:list "/work/tree")
    assert.are.same({ "a", "file.txt", "link" }, { list[1].name, list[2].name, list[3].name })
    assert.are.equal(3, #list)
    assert.are.equal("dir", list[1].type)
    assert.are.equal("file", list[2].type)
    assert.are.equal(5, list[2].size)
    assert.are.equal("symlink", list[3].type)
    assert.is_true(list[2].mtime > 1e9)
    assert.are.equal("file", assert(sb:stat "/work/tree/link").type)
    local link = assert(sb:stat("/work/tree/link", { follow = false }))
    assert.are.equal("symlink", link.type)
    assert.are.equal("file.txt", link.link_target)

    assert(sb:rename("/work/tree/file.txt", "/work/tree/moved.txt"))
    assert.are.equal("12345", sb:read_file "/work/tree/moved.txt")
    assert(sb:write_file("/work/tree/other", "o"))
    _, _, name = sb:rename("/work/tree/other", "/work/tree/moved.txt", { replace = false })
    assert.are.equal("EEXIST", name)
    assert(sb:rename("/work/tree/other", "/work/tree/moved.txt"))
    assert.are.equal("o", sb:read_file "/work/tree/moved.txt")

    _, _, name = sb:remove "/work/tree"
    assert.are.equal("ENOTEMPTY", name)
    assert(sb:remove "/work/tree/moved.txt")
    assert(sb:remove("/work/tree", { recursive = true }))
    _, _, name = sb:stat "/work/tree"
    assert.are.equal("ENOENT", name)
  end)

  it("never reach host files through .. or symlinks", function()
    local secret = outside .. "/secret"
    local climbs = "/../../../../../../../.." .. secret
    local data, _, name = sb:read_file(climbs)
    assert.is_nil(data)
    assert.are.equal("ENOENT", name)
    assert(sb:exec("ln -s " .. secret .. " /work/to-secret; ln -s ../../../../../../.. /work/up"))
    data, _, name = sb:read_file "/work/to-secret"
    assert.is_nil(data)
    assert.are.equal("ENOENT", name)
    data = sb:read_file("/work/up" .. secret)
    assert.is_nil(data)
    -- Writes through the same paths land inside the sandbox, if anywhere.
    sb:write_file(climbs, "changed", { parents = true })
    sb:write_file("/work/to-secret", "changed", { parents = true })
    sb:write_file("/work/up" .. secret, "changed", { parents = true })
    assert.are.equal("host secret\n", sandboxes.read(secret))
    -- The same path inside the sandbox got the writes.
    assert.are.equal("changed", sb:read_file(secret))
  end)

  it("reject paths with NUL bytes, naming them", function()
    local ok, message, name = sb:write_file("/tmp/f\0.txt", "x")
    assert.is_nil(ok)
    assert.are.equal("EINVAL", name)
    assert.are.equal('EINVAL: invalid path: "/tmp/f\\0.txt" (contains a NUL byte)', message)
    assert.are.equal("ENOENT", select(3, sb:stat "/tmp/f"))
    local data
    data, message, name = sb:read_file "/etc/hostname\0junk"
    assert.is_nil(data)
    assert.are.equal("EINVAL", name)
    assert.matches("hostname\\0junk", message, 1, true)
    for _, call in ipairs {
      function() return sb:stat "/etc\0" end,
      function() return sb:list "/etc\0" end,
      function() return sb:mkdir "/tmp/d\0" end,
      function() return sb:remove "/tmp\0" end,
      function() return sb:rename("/etc/hostname", "/x\0") end,
      function() return sb:rename("/e\0", "/x") end,
    } do
      ok, message, name = call()
      assert.is_nil(ok)
      assert.are.equal("EINVAL", name, message)
    end
  end)

  it("rename: name the missing source or target directory", function()
    assert(sb:write_file("/work/rename-me", "r"))
    local ok, message, name = sb:rename("/nosuch", "/tmp/x")
    assert.is_nil(ok)
    assert.are.equal("ENOENT", name)
    assert.are.equal("ENOENT: no such file: /nosuch", message)
    ok, message, name = sb:rename("/work/rename-me", "/nodir/x")
    assert.is_nil(ok)
    assert.are.equal("ENOENT: no such directory: /nodir", message)
    assert.are.equal("ENOENT", name)
    -- / is the overlay and /tmp a tmpfs: rename(2) cannot move between them.
    ok, message, name = sb:rename("/work/rename-me", "/tmp/moved")
    assert.is_nil(ok)
    assert.are.equal("EXDEV", name)
    assert.are.equal("EXDEV: cannot rename across mounts: /work/rename-me to /tmp/moved (copy, then remove)",
      message)
    assert.are.equal("r", sb:read_file "/work/rename-me")
  end)

  it("refuse to remove the root or a mount point, deleting nothing", function()
    local ok, message, name = sb:remove("/", { recursive = true })
    assert.is_nil(ok)
    assert.are.equal("EINVAL", name)
    assert.are.equal("EINVAL: cannot remove the root directory: /", message)
    ok, message, name = sb:remove("/work/../", { recursive = true })
    assert.is_nil(ok)
    assert.are.equal("EINVAL", name, message)
    assert(sb:write_file("/tmp/keep", "k"))
    ok, message, name = sb:remove("/tmp", { recursive = true })
    assert.is_nil(ok)
    assert.are.equal("EBUSY", name)
    assert.are.equal("EBUSY: is a mount point: /tmp", message)
    ok, _, name = sb:remove("/dev", { recursive = true })
    assert.is_nil(ok)
    assert.are.equal("EBUSY", name)
    assert.are.equal("k", sb:read_file "/tmp/keep")
    assert.are.equal("file", assert(sb:stat "/etc/hostname").type)
    assert.are.equal("file", assert(sb:stat "/bin/sh").type)
    assert.are.equal(0, assert(sb:exec "true").exit_code)
  end)

  it("read_file: reject files over max_size", function()
    assert(sb:exec "head -c 67108865 /dev/zero > /tmp/over; head -c 3000 /dev/zero > /work/small")
    local data, message, name = sb:read_file "/tmp/over"
    assert.is_nil(data)
    assert.are.equal("EFBIG", name)
    assert.are.equal("EFBIG: file too large (67108865 bytes, more than the maximum of 67108864): /tmp/over",
      message)
    data, message, name = sb:read_file("/work/small", { max_size = 2999 })
    assert.is_nil(data)
    assert.are.equal("EFBIG", name, message)
    assert.are.equal(3000, #assert(sb:read_file("/work/small", { max_size = 3000 })))
    assert.are.equal(67108865, #assert(sb:read_file("/tmp/over", { max_size = math.huge })))
    _, message, name = sb:read_file("/work/small", { max_size = -1 })
    assert.are.equal("EINVAL", name, message)
    assert.has_error(function() sb:read_file("/work/small", { max = 1 }) end)
    assert(sb:remove "/tmp/over")
  end)
end)
