-- wrk script for scripts/loadtest.sh: POSTs the body in $LOADTEST_BODY with
-- the Authorization header in $LOADTEST_AUTH, and prints one machine-readable
-- line at the end so the shell script need not parse wrk's human output.
-- Latencies are in microseconds.

wrk.method = "POST"
wrk.body = os.getenv("LOADTEST_BODY")
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("LOADTEST_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "LOADTEST_RESULT p50_us=%d p99_us=%d requests=%d duration_us=%d errors=%d non2xx=%d\n",
    latency:percentile(50), latency:percentile(99), summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status))
end
