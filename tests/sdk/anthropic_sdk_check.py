"""The official Anthropic Python SDK against a running triage (fake upstream behind it).

Usage: python anthropic_sdk_check.py BASE_URL UPSTREAM
  BASE_URL  triage's address, e.g. http://127.0.0.1:8080 (the SDK adds /v1/messages)
  UPSTREAM  "openai" or "anthropic": which fake provider triage forwards to; it names
            the models that answer (ok-simple / claude-haiku-test)
Exits non-zero with a message on the first failed check.
"""
import sys

import anthropic

base_url, upstream = sys.argv[1], sys.argv[2]
simple_model = {"openai": "ok-simple", "anthropic": "claude-haiku-test"}[upstream]
client = anthropic.Anthropic(base_url=base_url, api_key="unused-by-triage", max_retries=0)
hello = [{"role": "user", "content": "hi there, good morning!"}]

# Non-streaming, with the raw response to see triage's headers.
raw = client.messages.with_raw_response.create(model="auto", max_tokens=100, messages=hello)
message = raw.parse()
assert raw.headers["x-triage-tier"] == "SIMPLE", raw.headers
assert message.type == "message" and message.role == "assistant", message
assert message.content[0].type == "text", message
assert message.content[0].text.startswith("answer from " + simple_model), message
assert message.stop_reason == "end_turn", message
assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0, message.usage

# System as blocks, stop sequences and metadata are accepted.
message = client.messages.create(
    model="auto",
    max_tokens=50,
    system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
    messages=hello,
    stop_sequences=["END"],
    metadata={"user_id": "u-1"},
)
assert message.content[0].text.startswith("answer from"), message

# Streaming through the SDK's helper: Anthropic's event sequence.
with client.messages.stream(model="auto", max_tokens=100, messages=hello) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
assert text == "Hello from the fake upstream", repr(text)
assert final.stop_reason == "end_turn", final
assert final.usage.output_tokens > 0, final.usage

# A tool-use round trip: the model calls the tool, the tool's result goes back.
tools = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]
ask = [{"role": "user", "content": "What's the weather in Paris right now?"}]
first = client.messages.create(model="auto", max_tokens=200, tools=tools, messages=ask)
assert first.stop_reason == "tool_use", first
uses = [b for b in first.content if b.type == "tool_use"]
assert len(uses) == 1 and uses[0].name == "get_weather", first
assert uses[0].input == {"city": "Paris"}, uses[0].input
second = client.messages.create(
    model="auto",
    max_tokens=200,
    tools=tools,
    messages=ask
    + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": uses[0].id, "content": "18C and sunny"}
            ],
        },
    ],
)
assert second.stop_reason == "end_turn", second
assert "18C and sunny" in second.content[0].text, second

# The same tool call, streamed: the input arrives as JSON deltas.
with client.messages.stream(model="auto", max_tokens=200, tools=tools, messages=ask) as stream:
    final = stream.get_final_message()
uses = [b for b in final.content if b.type == "tool_use"]
assert final.stop_reason == "tool_use" and uses and uses[0].input == {"city": "Paris"}, final

# Token counting.
count = client.messages.count_tokens(model="auto", messages=hello)
assert count.input_tokens > 0, count

# Errors arrive as the SDK's typed exceptions, in Anthropic's error shape.
try:
    client.messages.create(model="no-such-model", max_tokens=10, messages=hello)
    raise AssertionError("unknown model accepted")
except anthropic.NotFoundError as e:
    assert "no-such-model" in str(e), e
    assert e.body["type"] == "error" and e.body["error"]["type"] == "not_found_error", e.body
try:
    client.messages.create(model="auto", max_tokens=10, messages=[])
    raise AssertionError("empty messages accepted")
except anthropic.BadRequestError as e:
    assert e.status_code == 400

print("anthropic sdk", anthropic.__version__, "via", upstream, "ok")
