"""Drives a served postmortem gateway with the official `openai` SDK."""
import os

import openai
from openai import OpenAI

client = OpenAI(base_url=os.environ["GATEWAY_URL"] + "/v1", api_key=os.environ["GATEWAY_KEY"], max_retries=0)

r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
assert r.choices[0].message.content, r
assert r.usage.total_tokens > 0, r

text = ""
for chunk in client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True):
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
assert text, "the stream carried no text"

# The SDK asks for base64 by default; the strict vLLM mock accepts it.
e = client.embeddings.create(model="bge", input=["hello"])
assert len(e.data[0].embedding) > 0, e
e = client.embeddings.create(model="bge", input=["hello"], encoding_format="float")
assert len(e.data[0].embedding) > 0, e

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    raise SystemExit("an unknown model should be a NotFoundError")
except openai.NotFoundError as err:
    assert "no-such-model" in str(err), err

# Legacy text completions, whole and streamed.
c = client.completions.create(model="gpt-4o", prompt="Say hi", max_tokens=16)
assert c.choices[0].text, c
streamed = "".join(ch.choices[0].text for ch in client.completions.create(model="gpt-4o", prompt="Say hi", stream=True) if ch.choices)
assert streamed, "the completions stream carried no text"

# The Responses API, whole and streamed (the SDK's own event types).
resp = client.responses.create(model="gpt-4o", input="Say hi", instructions="be brief")
assert resp.output_text, resp
assert resp.usage.total_tokens > 0, resp
events = [ev.type for ev in client.responses.create(model="gpt-4o", input="Say hi", stream=True)]
assert events[0] == "response.created" and events[-1] == "response.completed", events
assert "response.output_text.delta" in events, events

# One model by id; an unknown one is OpenAI's NotFoundError.
m = client.models.retrieve("gpt-4o")
assert m.id == "gpt-4o" and m.object == "model", m
try:
    client.models.retrieve("no-such-model")
    raise SystemExit("an unknown model id should be a NotFoundError")
except openai.NotFoundError:
    pass

# The AzureOpenAI client addresses /openai/deployments/{name}/... with api-version and api-key.
azure = openai.AzureOpenAI(
    azure_endpoint=os.environ["GATEWAY_URL"], api_key=os.environ["GATEWAY_KEY"], api_version="2024-10-21", max_retries=0
)
r = azure.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
assert r.choices[0].message.content, r
e = azure.embeddings.create(model="bge", input="hello", encoding_format="float")
assert len(e.data[0].embedding) > 0, e

bad = OpenAI(base_url=os.environ["GATEWAY_URL"] + "/v1", api_key="wrong-key-123", max_retries=0)
try:
    bad.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    raise SystemExit("a wrong key should be an AuthenticationError")
except openai.AuthenticationError:
    pass

print("openai sdk: ok")
