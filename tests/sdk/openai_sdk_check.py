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

models = [m.id for m in client.models.list()]
assert models[0] == "auto", models

print("openai sdk", openai.__version__, "ok")
