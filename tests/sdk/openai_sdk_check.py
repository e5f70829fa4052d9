"""The official OpenAI Python SDK against a running triage (fake upstream behind it).

Usage: python openai_sdk_check.py BASE_URL   (e.g. http://127.0.0.1:8080/v1)
Exits non-zero with a message on the first failed check.
"""
import sys

import openai

base_url = sys.argv[1]
client = openai.OpenAI(base_url=base_url, api_key="unused-by-triage", max_retries=0)

# Non-streaming, with the raw response to see triage's headers.
raw = client.chat.completions.with_raw_response.create(
    model="auto", messages=[{"role": "user", "content": "hi there, good morning!"}]
)
completion = raw.parse()
assert raw.headers["x-triage-tier"] == "SIMPLE", raw.headers
assert raw.headers["x-triage-model"] == "ok-simple", raw.headers
assert completion.choices[0].message.content.startswith("answer from ok-simple"), completion
assert completion.usage.prompt_tokens == 11, completion.usage

# Streaming.
stream = client.chat.completions.create(
    model="auto",
    messages=[{"role": "user", "content": "hi there, good morning!"}],
    stream=True,
)
text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
assert text == "Hello from the fake upstream", repr(text)

# Streaming with usage.
stream = client.chat.completions.create(
    model="auto",
    messages=[{"role": "user", "content": "hi there, good morning!"}],
    stream=True,
    stream_options={"include_usage": True},
)
usage = [c.usage for c in stream if c.usage is not None]
assert usage and usage[-1].completion_tokens == 5, usage

# Errors arrive as the SDK's typed exceptions.
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("unknown model accepted")
except openai.NotFoundError as e:
    assert "no-such-model" in str(e), e
try:
    client.chat.completions.create(model="auto", messages=[])
    raise AssertionError("empty messages accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400

# The Responses API: a string input, then items with instructions.
raw = client.responses.with_raw_response.create(model="auto", input="hi there, good morning!")
response = raw.parse()
assert raw.headers["x-triage-tier"] == "SIMPLE", raw.headers
assert response.status == "completed", response
assert response.output_text.startswith("answer from ok-simple"), response
assert response.usage.input_tokens > 0, response.usage
response = client.responses.create(
    model="auto",
    instructions="Be terse.",
    input=[{"role": "user", "content": [{"type": "input_text", "text": "hi there, good morning!"}]}],
)
assert response.output_text.startswith("answer from"), response

# Streaming Responses: the SDK's typed events, ending in response.completed.
events = list(client.responses.create(model="auto", input="hi there, good morning!", stream=True))
kinds = [e.type for e in events]
assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
assert text == "Hello from the fake upstream", repr(text)
assert events[-1].response.output_text == text, events[-1]

# A function-call round trip.
tools = [{"type": "function", "name": "get_weather", "description": "The weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                         "required": ["city"]}}]
first = client.responses.create(model="auto", input="What's the weather in Paris right now?", tools=tools)
calls = [o for o in first.output if o.type == "function_call"]
assert len(calls) == 1 and calls[0].name == "get_weather", first
assert calls[0].arguments.replace(" ", "") == '{"city":"Paris"}', calls[0]
second = client.responses.create(
    model="auto",
    tools=tools,
    input=[{"role": "user", "content": "What's the weather in Paris right now?"}]
    + [c.model_dump(exclude_none=True) for c in calls]
    + [{"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C and sunny"}],
)
assert "18C and sunny" in second.output_text, second

# State triage does not keep is refused by name, not answered wrongly.
try:
    client.responses.create(model="auto", input="and then?", previous_response_id="resp_123")
    raise AssertionError("previous_response_id accepted")
except openai.BadRequestError as e:
    assert "previous_response_id" in str(e), e

# Local embeddings: the SDK asks for base64 by default and decodes it.
emb = client.embeddings.create(model="triage-embed", input=["first text", "second text", "third"])
assert [d.index for d in emb.data] == [0, 1, 2], emb
assert all(len(d.embedding) == 384 for d in emb.data), [len(d.embedding) for d in emb.data]
assert emb.usage.prompt_tokens > 0, emb.usage
one = client.embeddings.create(model="triage-embed", input="first text", encoding_format="float")
assert len(one.data) == 1 and len(one.data[0].embedding) == 384
same = sum(a * b for a, b in zip(one.data[0].embedding, emb.data[0].embedding))
assert same > 0.999, same

models = [m.id for m in client.models.list()]
assert models[0] == "auto", models

print("openai sdk", openai.__version__, "ok")
