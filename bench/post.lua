-- wrk script: POST the image file as the raw body with the Bearer key, as the 2019 clients did,
-- and print the run's figures as one JSON line that bench/load.py parses.
-- Usage: wrk ... -s bench/post.lua URL -- KEY_FILE BODY_FILE ["Name: value"]   (the key never goes in argv)
-- BODY_FILE is the image, or a whole v2 request for Triton, which needs the extra header.

local function slurp(path)
  local file = assert(io.open(path, "rb"))
  local content = file:read("*a")
  file:close()
  return content
end

function init(args)
  wrk.method = "POST"
  wrk.body = slurp(args[2])
  wrk.headers["Authorization"] = "Bearer " .. (slurp(args[1]):gsub("%s+$", ""))
  wrk.headers["Content-Type"] = "application/octet-stream"
  if args[3] then
    local name, value = args[3]:match("^([^:]+):%s*(.*)$")
    wrk.headers[name] = value
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_s": %.6f, "status_errors": %d, "socket_errors": %d, "p50_ms": %.3f, "p99_ms": %.3f}\n',
    summary.requests, summary.duration / 1e6, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3))
end
