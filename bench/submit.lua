-- wrk script for POST /submit with unique callIds.
-- Arguments (after `--`): API key, mode, run tag (8 hex digits), calls per thread (0 = no limit)
--   mode "pairs":     beat 1 then beat 2 (with recordingUrl) of each call: 2 requests per call
--   mode "finishing": only finishing beats: 1 request per call
-- With a call limit, each thread sends exactly its quota of /submit requests, then only
-- GET /healthz (status 200, not counted) until every /submit answer is in, then stops.
-- wrk itself runs for its whole -d duration; a thread that got all its answers appends a line
-- to the file named by the 5th argument so the caller can stop wrk (SIGINT) right then.
-- done() prints one JSON line "WRKJSON {...}" with status counts and latency percentiles.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  key = args[1] or ""
  mode = args[2] or "pairs"
  tag = args[3] or "0badc0de"
  quota = tonumber(args[4] or "0")
  done_file = args[5]
  per_call = (mode == "pairs") and 2 or 1
  quota_requests = quota * per_call
  n = 0
  answered = 0
  s202, s400, s401, s413, s429, s503, sother = 0, 0, 0, 0, 0, 0, 0
  headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}
  health = wrk.format("GET", "/healthz")
  -- wrk calls request() once on thread 0 to check the script and discards the result.
  discard_next = (tid == 0)
end

local function call_id(i)
  return string.format("%s-%04x-4%03x-8%03x-%012x", tag, tid % 65536,
                       math.floor(i / 16777216) % 4096, 0, i % 16777216)
end

function request()
  if discard_next then
    discard_next = false
    return health
  end
  if quota_requests > 0 and n >= quota_requests then
    return health
  end
  local i = n
  n = n + 1
  local call, finishing
  if per_call == 2 then
    call = math.floor(i / 2)
    finishing = (i % 2) == 1
  else
    call = i
    finishing = true
  end
  local id = call_id(call)
  local body
  if finishing then
    body = string.format('{"callId":"%s","from":"+31612345678","to":"+31201234567",'
      .. '"startTime":"2026-06-16T09:05:35.000Z","outgoing":false,"duration":42,'
      .. '"recordingUrl":"https://rec.example.com/%s.wav"}', id, id)
  else
    body = string.format('{"callId":"%s","from":"+31612345678","to":"+31201234567",'
      .. '"startTime":"2026-06-16T09:05:35.000Z","outgoing":false}', id)
  end
  return wrk.format("POST", "/submit", headers, body)
end

function response(status, hdrs, body)
  if status == 200 then return end
  answered = answered + 1
  if status == 202 then s202 = s202 + 1
  elseif status == 400 then s400 = s400 + 1
  elseif status == 401 then s401 = s401 + 1
  elseif status == 413 then s413 = s413 + 1
  elseif status == 429 then s429 = s429 + 1
  elseif status == 503 then s503 = s503 + 1
  else sother = sother + 1 end
  if quota_requests > 0 and answered >= quota_requests then
    if done_file then
      local f = io.open(done_file, "a")
      f:write(tostring(tid) .. "\n")
      f:close()
    end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local totals = {s202 = 0, s400 = 0, s401 = 0, s413 = 0, s429 = 0, s503 = 0, sother = 0,
                  sent = 0}
  for _, t in ipairs(threads) do
    for k, _ in pairs(totals) do
      if k == "sent" then
        totals.sent = totals.sent + (t:get("n") or 0)
      else
        totals[k] = totals[k] + (t:get(k) or 0)
      end
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"duration_us":%d,"requests":%d,"submit_sent":%d,"status":{"202":%d,"400":%d,'
    .. '"401":%d,"413":%d,"429":%d,"503":%d,"other":%d},'
    .. '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},'
    .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.duration, summary.requests, totals.sent, totals.s202, totals.s400, totals.s401,
    totals.s413, totals.s429, totals.s503, totals.sother, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
