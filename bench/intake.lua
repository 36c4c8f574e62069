-- wrk script of bench/intake.py: every request posts a different web-form lead.
--
--   wrk -t T -c C -d S -s bench/intake.lua URL -- PATH THREADS [QUOTA]
--
-- Lead i (i = thread id + THREADS * k) is unique: content deduplication would
-- otherwise answer repeats without storing them. Every third lead (i > 0) gives
-- the phone and email of an earlier, different person in another phone format,
-- as a known client writing again. With QUOTA > 0 the threads post leads
-- 0 .. QUOTA-1 exactly once between them and then only GET /healthz (wrk cannot
-- skip a request), and a thread stops once all its posts are answered.
--
-- done() prints one line, "BENCH_JSON {...}": latency percentiles (µs) over
-- every answer, wrk's error counts, and the threads' own counts of posts sent,
-- 2xx answers to posts and other answers.

local first_names = { "Иван", "Мария", "Алексей", "Ольга", "Дмитрий", "Анна", "Сергей", "Елена" }
local last_names = { "Петров", "Смирнова", "Кузнецов", "Попова", "Соколов", "Лебедева", "Новиков" }
local formats = {
   function(a, b, c) return "8 (912) " .. a .. "-" .. b .. "-" .. c end,
   function(a, b, c) return "+7 912 " .. a .. b .. c end,
   function(a, b, c) return "912" .. a .. b .. c end,
   function(a, b, c) return "+7 (912) " .. a .. "-" .. b .. c end,
}

local function urlencode(s)
   return (s:gsub("[^%w%-%._~]", function(ch) return string.format("%%%02X", ch:byte()) end))
end

-- main state: one entry per thread, read back in done()
local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

-- thread state
local path, nthreads, quota, k, verifying
local post_headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
local health, first_enc, last_enc, tail, prefix

function init(args)
   path = args[1] or "/forms/contact"
   nthreads = tonumber(args[2] or "1")
   quota = tonumber(args[3] or "0")
   k = 0
   -- wrk calls thread 0's request() once before the run, to check it (script_verify_request)
   verifying = id == 0
   sent, ok, other, health_answers, done_posts = 0, 0, 0, 0, false
   first_enc, last_enc = {}, {}
   for n, v in ipairs(first_names) do first_enc[n] = urlencode(v) end
   for n, v in ipairs(last_names) do last_enc[n] = urlencode(v) end
   prefix = "&comment=" .. urlencode("Заявка номер ")
   tail = "&utm_source=yandex&utm_campaign=autumn"
   health = wrk.format("GET", "/healthz")
end

function request()
   if verifying then
      verifying = false
      return health
   end
   local i = id + nthreads * k
   if quota > 0 and i >= quota then
      done_posts = true
      return health
   end
   k = k + 1
   sent = sent + 1
   local person = i
   if i > 0 and i % 3 == 0 then
      person = math.floor(i / 2)
      if person % 3 == 0 then person = person - 1 end -- a lead that used its own person
   end
   local digits = string.format("%07d", person)
   local phone = formats[i % 4 + 1](digits:sub(1, 3), digits:sub(4, 5), digits:sub(6, 7))
   local body = "fio=" .. first_enc[person % 8 + 1] .. "+" .. last_enc[person % 7 + 1]
      .. "&tel=" .. urlencode(phone)
      .. "&email=client" .. person .. "%40example.ru"
      .. prefix .. i .. tail
   return wrk.format("POST", path, post_headers, body)
end

function response(status, headers, body)
   if body:find('"lead_id"', 1, true) then
      if status >= 200 and status < 300 then ok = ok + 1 else other = other + 1 end
   elseif status >= 200 and status < 300 and body:find('"status"', 1, true) then
      health_answers = health_answers + 1
   else
      other = other + 1
   end
   if done_posts and ok + other >= sent then
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   local sent_all, ok_all, other_all, health_all = 0, 0, 0, 0
   for _, thread in ipairs(threads) do
      sent_all = sent_all + thread:get("sent")
      ok_all = ok_all + thread:get("ok")
      other_all = other_all + thread:get("other")
      health_all = health_all + thread:get("health_answers")
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"duration_us": %d, "requests": %d, "sent": %d, "ok": %d, "other": %d, '
      .. '"health": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, '
      .. '"status_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
      .. '"p999_us": %d, "max_us": %d, "mean_us": %.1f}\n',
      summary.duration, summary.requests, sent_all, ok_all, other_all, health_all,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max, latency.mean))
end
