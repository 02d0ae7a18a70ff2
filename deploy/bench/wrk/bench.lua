-- wrk script for the benchmark: prints one machine-readable summary line
-- ("WRKJSON {...}") after wrk's own report. With BENCH_MISS_PREFIX set,
-- every request asks for a new key: PREFIX<thread>-<counter>?<BENCH_MISS_QUERY>.

local prefix = os.getenv("BENCH_MISS_PREFIX")
local query = os.getenv("BENCH_MISS_QUERY") or "size=1024&cc=max-age%3D3600"
local threads = 0

function setup(thread)
   threads = threads + 1
   thread:set("tid", threads)
end

if prefix then
   local counter = 0
   function request()
      counter = counter + 1
      return wrk.format(nil, prefix .. tostring(tid) .. "-" .. counter .. "?" .. query)
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean))
end
