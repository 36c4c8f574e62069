-- wrk script of bench/caller_card.py: caller-card lookups at a paced rate.
--
--   wrk -t T -c C -d S -s bench/caller_card.lua URL -- PATH CONTACTS INTERVAL_MS TOKEN KNOWN
--
-- Each request asks for one number: with probability KNOWN a seeded contact's
-- (+7 900 and the contact's index in seven digits), else a number nobody has
-- (+7 901 ...), written in one of four local formats. Debian's wrk has no -R,
-- so every connection waits a random 0 .. 2*INTERVAL_MS after each answer
-- (delay()): C connections make about C / INTERVAL_MS requests per ms. The mix
-- is fixed: each thread seeds its random numbers with its id.
--
-- done() prints one line, "BENCH_JSON {...}": latency percentiles (µs), wrk's
-- error counts, and the threads' counts of 200 answers, known cards and other answers.

local formats = {
   function(p, d) return "8 (" .. p .. ") " .. d:sub(1, 3) .. "-" .. d:sub(4, 5) .. "-" .. d:sub(6, 7) end,
   function(p, d) return "+7 " .. p .. " " .. d:sub(1, 3) .. " " .. d:sub(4, 5) .. " " .. d:sub(6, 7) end,
   function(p, d) return p .. d end,
   function(p, d) return "+7" .. p .. d end,
}

local function urlencode(s)
   return (s:gsub("[^%w%-%._~]", function(ch) return string.format("%%%02X", ch:byte()) end))
end

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

local path, contacts, interval, headers, known_share

function init(args)
   path = args[1]
   contacts = tonumber(args[2])
   interval = tonumber(args[3])
   headers = { ["Authorization"] = "Bearer " .. args[4] }
   known_share = tonumber(args[5] or "0.8")
   math.randomseed(1000 + id)
   ok, known, other = 0, 0, 0
end

function request()
   local prefix = "901"
   if math.random() < known_share then prefix = "900" end
   local digits = string.format("%07d", math.random(0, contacts - 1))
   local phone = formats[math.random(1, #formats)](prefix, digits)
   return wrk.format("GET", path .. "?phone=" .. urlencode(phone), headers)
end

function delay()
   return math.random(0, 2 * interval)
end

function response(status, headers, body)
   if status == 200 then
      ok = ok + 1
      if body:find('"known":true', 1, true) then known = known + 1 end
   else
      other = other + 1
   end
end

function done(summary, latency, requests)
   local ok_all, known_all, other_all = 0, 0, 0
   for _, thread in ipairs(threads) do
      ok_all = ok_all + thread:get("ok")
      known_all = known_all + thread:get("known")
      other_all = other_all + thread:get("other")
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"duration_us": %d, "requests": %d, "ok": %d, "known": %d, "other": %d, '
      .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, "max_us": %d}\n',
      summary.duration, summary.requests, ok_all, known_all, other_all,
      e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max))
end
