-- wrk script for `npm run bench`: POSTs WRK_BODY with WRK_AUTHORIZATION (if set) and an
-- Idempotency-Key chosen by WRK_KEYS:
--   fresh   a new key per request: WRK_KEY_PREFIX-<thread>-<n> (new charges)
--   cycle   one of WRK_KEY_COUNT completed keys in turn: WRK_KEY_PREFIX-<i> (replays)
--   none    no key (the trivial mutation, the gateway's stack alone)
-- At the end it prints one line, WRK_RESULT {json}, that bench/wrk.ts reads.
local body = os.getenv("WRK_BODY")
local authorization = os.getenv("WRK_AUTHORIZATION") or ""
local keys = os.getenv("WRK_KEYS") or "none"
local prefix = os.getenv("WRK_KEY_PREFIX") or "bench"
local keyCount = tonumber(os.getenv("WRK_KEY_COUNT") or "1")
local threadCount = 0
local counter = 0
thread_id = 0

function setup(thread)
  threadCount = threadCount + 1
  thread:set("thread_id", threadCount)
end

function request()
  counter = counter + 1
  local headers = { ["content-type"] = "application/json" }
  if authorization ~= "" then headers["authorization"] = authorization end
  if keys == "fresh" then
    headers["idempotency-key"] = prefix .. "-" .. thread_id .. "-" .. counter
  elseif keys == "cycle" then
    headers["idempotency-key"] = prefix .. "-" .. ((counter + thread_id * 7919) % keyCount)
  end
  return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"durationUs":%d,"non2xx":%d,"socketErrors":%d,"p50Us":%d,"p99Us":%d}\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
