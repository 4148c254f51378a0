-- wrk script: POST an IDoc-XML template with a unique DOCNUM per request.
--
--   wrk -t2 -c64 -d8s --latency -s bench/post_idoc.lua URL -- FILE RUN AUTH
--
-- FILE  a template from gen_idocs.py (placeholders @@@@DOCNUM@@@@@@ and
--       @@PONUM@@@, replaced by values of the same length)
-- RUN   a number 0..99 that differs between wrk runs against the same queue
-- AUTH  the base64 of "user:password" for the Basic Authorization header
--
-- DOCNUM = RUN (2 digits) + wrk thread number (2) + per-thread counter (12):
-- unique across threads and runs, so every request is a new record and a
-- real commit (a duplicate would skip the write and flatter the figures).
--
-- done() prints one machine-readable line for bench/run.sh:
--   BENCH requests=N duration_us=N bytes_per_req=N p50_us=N p90_us=N p99_us=N
--         max_us=N non2xx=N connect_err=N read_err=N write_err=N timeouts=N

local threads = {}
local counter = 0
local run_id = 0
local tid = 0
local pieces = nil   -- {pre, mid, post}
local headers = nil
body_len = 0        -- global: done() reads it through thread:get

function setup(thread)
   thread:set("tid", #threads + 1)
   table.insert(threads, thread)
end

local function read_file(path)
   local f = assert(io.open(path, "rb"))
   local s = f:read("*a")
   f:close()
   return s
end

function init(args)
   local file, run, auth = args[1], args[2], args[3]
   assert(file and run and auth, "usage: -- FILE RUN AUTH")
   run_id = tonumber(run) % 100
   tid = tonumber(wrk.thread:get("tid")) or 0
   local tpl = read_file(file)
   local d1, d2 = string.find(tpl, "@@@@DOCNUM@@@@@@", 1, true)
   assert(d1, "no DOCNUM placeholder in " .. file)
   local pre, rest = string.sub(tpl, 1, d1 - 1), string.sub(tpl, d2 + 1)
   -- the PO number may appear several times; split on each occurrence
   local parts = {}
   local pos = 1
   while true do
      local p1, p2 = string.find(rest, "@@PONUM@@@", pos, true)
      if not p1 then break end
      table.insert(parts, string.sub(rest, pos, p1 - 1))
      pos = p2 + 1
   end
   table.insert(parts, string.sub(rest, pos))
   pieces = { pre = pre, parts = parts }
   body_len = #tpl
   headers = {
      ["Content-Type"] = "text/xml; charset=utf-8",
      ["Authorization"] = "Basic " .. auth,
   }
end

function request()
   counter = counter + 1
   local docnum = string.format("%02d%02d%012d", run_id, tid % 100, counter)
   local ponum = string.format("45%02d%06d", tid % 100, counter % 1000000)
   local t = { pieces.pre, docnum }
   local parts = pieces.parts
   for i = 1, #parts do
      if i > 1 then t[#t + 1] = ponum end
      t[#t + 1] = parts[i]
   end
   return wrk.format("POST", nil, headers, table.concat(t))
end

function done(summary, latency, requests)
   local e = summary.errors
   local bytes = threads[1] and tonumber(threads[1]:get("body_len")) or 0
   io.write(string.format(
      "BENCH requests=%d duration_us=%d bytes_per_req=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
      "non2xx=%d connect_err=%d read_err=%d write_err=%d timeouts=%d\n",
      summary.requests, summary.duration, bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      e.status, e.connect, e.read, e.write, e.timeout))
end
