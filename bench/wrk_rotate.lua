-- wrk script: GET a path, rotating Authorization header values read from a file (one a line).
-- Usage: wrk ... -s bench/wrk_rotate.lua URL -- TOKENS_FILE [PATH]
-- Prints one line "BENCHJSON {...}" with counts, errors (non-2xx included) and latency percentiles (us).

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  tokens = {}
  for line in io.lines(args[1]) do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  if #tokens == 0 then error("no tokens in " .. tostring(args[1])) end
  target = args[2] or "/api/me"
  -- Threads start at different points of the list.
  idx = math.floor((tid or 0) * #tokens / 2)
  non2xx = 0
end

function request()
  idx = idx % #tokens + 1
  return wrk.format("GET", target, { ["Authorization"] = tokens[idx] })
end

function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end

function done(summary, latency, requests)
  local non = 0
  for _, t in ipairs(threads) do non = non + (t:get("non2xx") or 0) end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,"err_connect":%d,"err_read":%d,'
      .. '"err_write":%d,"err_status":%d,"err_timeout":%d,"lat_mean_us":%.1f,"lat_max_us":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, non, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
