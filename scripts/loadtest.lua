-- wrk script: POST short chat requests with model "auto" to /v1/chat/completions.
-- Every prompt carries a counter, so none is served from the memo of exact texts:
-- each request is a real forward pass. Each wrk thread numbers its own requests.
local prompts = {
  "hi there!", "What are your opening hours?", "Where is my order?",
  "Write a haiku about rain", "Summarize this: the meeting moved to Friday.",
  "How do I reset my password?", "Translate 'good morning' into Spanish",
  "Is a refund possible after 30 days?",
}
local i = 0
local id = "0"
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("id", tostring(threads))
end
request = function()
  i = i + 1
  local body = '{"model":"auto","messages":[{"role":"user","content":"' .. prompts[(i % #prompts) + 1] .. ' #' .. id .. '.' .. i .. '"}]}'
  return wrk.format("POST", "/v1/chat/completions", {["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  io.write(string.format("requests %d, errors: connect %d read %d write %d status %d timeout %d\n",
    summary.requests, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout))
  io.write(string.format("latency p50 %.2f ms p99 %.2f ms\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
