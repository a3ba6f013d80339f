-- An agent-style workflow on sandlot's snapshots, run by `make demo` (as
-- root) or `build/sandlot run examples/demo.lua`:
--
--  1. create a sandbox and start a persistent Python interpreter in it;
--  2. load the Python standard library's sources, which ship in the base
--     template, and count their identifiers, kept only in the
--     interpreter's memory;
--  3. snapshot the sandbox and fork it three times at once. Each fork
--     continues from that memory with its own way to rank the names, in
--     parallel, and the results are compared;
--  4. break the original (delete library folders, clear the counts) and
--     roll it back;
--  5. pause and resume it, list the snapshots page by page, filter them by
--     sandbox and name, and delete one while its forks run;
--  6. remove everything it created.
--
-- It prints the timings as it goes. It uses a store of its own under /tmp
-- (or $SANDLOT_HOME) and the machine-wide template cache, where the first
-- run builds the base template (a few minutes).
local sandlot = require "sandlot"
local uv = require "luv"

local Sandbox = sandlot.Sandbox

if uv.getuid() ~= 0 then
  error("examples/demo.lua runs process sandboxes, which need root", 0)
end

local own_store = os.getenv "SANDLOT_HOME" == nil
local home = os.getenv "SANDLOT_HOME" or assert(uv.fs_mkdtemp "/tmp/sandlot-demo-XXXXXX")
assert(sandlot.set_home(home))

local started = uv.hrtime()
local function say(fmt, ...)
  print(("[%6.2f s] " .. fmt):format((uv.hrtime() - started) / 1e9, ...))
end

local function ms(seconds)
  return ("%.0f ms"):format(seconds * 1000)
end

--- Time a call: returns its seconds, then its results.
local function timed(fn, ...)
  local t0 = uv.hrtime()
  local results = table.pack(fn(...))
  return (uv.hrtime() - t0) / 1e9, table.unpack(results, 1, results.n)
end

-- ---- A persistent Python interpreter ----

-- It reads code up to a line "__END__", runs it in one namespace that
-- lives as long as the process, and ends its output with "__DONE__".
local interpreter = [[
import sys, traceback
namespace = {}
chunk = []
for line in sys.stdin:
    if line.rstrip("\n") == "__END__":
        try:
            exec("".join(chunk), namespace)
        except Exception:
            traceback.print_exc(file=sys.stdout)
        chunk = []
        print("__DONE__", flush=True)
    else:
        chunk.append(line)
]]

--- Run `code` in the interpreter behind `process`; returns its output.
local function python(process, code)
  assert(process:write(code .. "\n__END__\n"))
  local lines = {}
  while true do
    local line = assert(process:read_line())
    if line == "__DONE__" then
      break
    end
    lines[#lines + 1] = line
  end
  return table.concat(lines, "\n")
end

-- The names in the code (not in comments or strings) of every module,
-- keywords left out: about 3 s of work that the forks then skip.
local load_corpus = [[
import collections, keyword, os, time, tokenize
started = time.time()
root = "/usr/lib/python3.11"
tokens = {}
for folder, subfolders, names in os.walk(root):
    subfolders[:] = [d for d in subfolders if d not in ("test", "tests", "__pycache__", "idlelib")]
    for name in names:
        if not name.endswith(".py"):
            continue
        path = os.path.join(folder, name)
        words = []
        with open(path, "rb") as f:
            try:
                for token in tokenize.tokenize(f.readline):
                    if token.type == tokenize.NAME and not keyword.iskeyword(token.string):
                        words.append(token.string)
            except (tokenize.TokenError, SyntaxError):
                pass
        tokens[path] = words
counts = collections.Counter()
for words in tokens.values():
    counts.update(words)
print(f"{len(tokens)} modules, {sum(counts.values())} names ({len(counts)} distinct) "
      f"in {time.time() - started:.2f} s")
]]

-- Three ways to rank the names that characterize the library. Each
-- fork runs one on the counts it inherited, and prints "word<TAB>score".
local approaches = {
  {
    name = "raw frequency",
    code = [[
for word, n in counts.most_common(10):
    print(f"{word}\t{n}")
]],
  },
  {
    name = "frequency without builtins",
    code = [[
import builtins
common = set(dir(builtins)) | {"self", "cls"}
ranked = [(w, n) for w, n in counts.most_common(400) if w not in common]
for word, n in ranked[:10]:
    print(f"{word}\t{n}")
]],
  },
  {
    name = "modules that use it",
    code = [[
spread = collections.Counter()
for words in tokens.values():
    spread.update(set(words))
for word, n in spread.most_common(10):
    print(f"{word}\t{n}")
]],
  },
}

local function parse_ranking(text)
  local ranking = {}
  for word, score in text:gmatch "([%w_]+)\t(%d+)" do
    ranking[#ranking + 1] = { word = word, score = tonumber(score) }
  end
  return ranking
end

local function overlap(a, b)
  local in_a, shared = {}, 0
  for _, item in ipairs(a) do
    in_a[item.word] = true
  end
  for _, item in ipairs(b) do
    if in_a[item.word] then
      shared = shared + 1
    end
  end
  return shared
end

-- ---- What the demo made, for the cleanup ----

local created = { sandboxes = {}, snapshots = {} }

local function keep(sandbox)
  created.sandboxes[#created.sandboxes + 1] = sandbox
  return sandbox
end

local function keep_snapshot(snap)
  created.snapshots[#created.snapshots + 1] = snap
  return snap
end

local function cleanup()
  for _, sandbox in ipairs(created.sandboxes) do
    sandbox:kill()
    sandbox:delete()
  end
  for _, snap in ipairs(created.snapshots) do
    sandlot.snapshots.delete(snap.id) -- ENOENT for the one deleted already
  end
  if own_store then
    local ok = os.execute(("rm -rf '%s'"):format(home))
    if not ok then
      print("could not remove the store " .. home)
    end
  end
end

-- ---- The workflow ----

local function main()
  say("store: %s", home)
  local seconds, sb = timed(Sandbox.create, {
    on_progress = function(line)
      say("template: %s", line)
    end,
  })
  keep(assert(sb))
  say("created %s in %s", sb.id, ms(seconds))

  local process = assert(sb:spawn { "python3", "-u", "-c", interpreter })
  say("Python interpreter started (process %d)", process.id)
  say("loading: %s", python(process, load_corpus))

  -- 3. Snapshot and fork.
  local snap
  seconds, snap = timed(sb.snapshot, sb, { name = "analysis", tag = "loaded",
    labels = { step = "loaded" } })
  keep_snapshot(assert(snap))
  say("snapshot %s (%s, %.1f MB): the sandbox was frozen for %s, the call took %s", snap.id,
    snap.kind, snap.size / 1e6, ms(snap.pause), ms(seconds))

  local forks
  seconds, forks = timed(Sandbox.create_many, { snapshot = snap, count = #approaches })
  assert(forks)
  for _, fork in ipairs(forks) do
    keep(fork)
  end
  say("forked %d sandboxes in %s (all together)", #forks, ms(seconds))

  local tasks = {}
  for i, fork in ipairs(forks) do
    tasks[i] = sandlot.spawn(function()
      local t0 = uv.hrtime()
      local copy = assert(fork:process(process.id))
      local check = python(copy, 'print(len(tokens), "modules already in memory")')
      local first = (uv.hrtime() - t0) / 1e9
      local ranking = parse_ranking(python(copy, approaches[i].code))
      return { check = check, first = first, total = (uv.hrtime() - t0) / 1e9, ranking = ranking }
    end)
  end
  local results = assert(sandlot.wait_all(tasks))
  for i, result in ipairs(results) do
    local words = {}
    for _, item in ipairs(result.ranking) do
      words[#words + 1] = ("%s %d"):format(item.word, item.score)
    end
    say("fork %d (%s): %s; first result after %s, done after %s", i, forks[i].id, result.check,
      ms(result.first), ms(result.total))
    say("  %s: %s", approaches[i].name, table.concat(words, ", "))
  end
  for i = 1, #results do
    for j = i + 1, #results do
      say("top 10 of %q and %q share %d words", approaches[i].name, approaches[j].name,
        overlap(results[i].ranking, results[j].ranking))
    end
  end

  -- 4. Break the original and roll it back.
  assert(sb:exec "rm -rf /usr/lib/python3.11/json /usr/lib/python3.11/email")
  python(process, "counts.clear(); tokens.clear()")
  local broken = assert(sb:exec { "python3", "-c", "import json" })
  say("after the destructive command: `import json` exits %d, %s names counted",
    broken.exit_code, python(process, "print(len(counts))"))
  seconds = timed(function()
    assert(sb:rollback(snap))
  end)
  process = assert(sb:process(process.id))
  local fixed = assert(sb:exec { "python3", "-c", "import json" })
  say("rolled back in %s: `import json` exits %d, %s names counted", ms(seconds),
    fixed.exit_code, python(process, "print(sum(counts.values()))"))

  -- 5. Pause and resume; snapshots page by page.
  local pause_seconds = timed(function()
    assert(sb:pause())
  end)
  local resume_seconds, resumed = timed(Sandbox.connect, sb.id)
  assert(resumed)
  say("paused in %s, resumed in %s (state %s); the interpreter kept %s", ms(pause_seconds),
    ms(resume_seconds), resumed.state, python(process, "print(len(tokens), 'modules')"))

  -- Checkpoints of the files only, to list.
  for step = 1, 5 do
    assert(sb:write_file("/checkpoint", tostring(step)))
    keep_snapshot(assert(sb:snapshot { name = "checkpoint", tag = "step" .. step, memory = false }))
  end
  keep_snapshot(assert(forks[1]:snapshot { name = "fork-result" }))

  local page, number = assert(sandlot.snapshots.list { sandbox = sb, limit = 2 }), 1
  while page do
    local names = {}
    for _, item in ipairs(page.items) do
      names[#names + 1] = ("%s %s:%s"):format(item.kind, item.name, item.tag or "")
    end
    say("snapshots of %s, page %d: %s", sb.id, number, table.concat(names, ", "))
    page, number = page:next(), number + 1
  end
  local named = assert(sandlot.snapshots.list { name = "checkpoint:step3" })
  say("name checkpoint:step3: %d snapshot (%s)", #named.items, named.items[1].id)
  local count = 0
  for _ in sandlot.snapshots.each { name = "checkpoint" } do
    count = count + 1
  end
  say("name checkpoint: %d snapshots; of fork %s: %d", count, forks[1].id,
    #assert(sandlot.snapshots.list { sandbox = forks[1] }).items)

  assert(sandlot.snapshots.delete(snap))
  local _, message = sandlot.snapshots.get "analysis:loaded"
  say("deleted %s (%s); its forks still run: %s", snap.id, message,
    python(assert(forks[2]:process(process.id)), "print(len(tokens), 'modules')"))
end

local ok, err = xpcall(main, debug.traceback)
say("cleaning up")
cleanup()
if not ok then
  error(err, 0)
end
say("done")
