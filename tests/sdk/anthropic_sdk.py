"""Drives a served postmortem gateway with the official `anthropic` SDK, to
each of the four Claude targets: plain, streaming, and with betas."""
import os

from anthropic import Anthropic

client = Anthropic(base_url=os.environ["GATEWAY_URL"], api_key=os.environ["GATEWAY_KEY"], max_retries=0)
messages = [{"role": "user", "content": "hi"}]

for model in ["claude-direct", "claude-bedrock", "claude-vertex", "claude-azure"]:
    r = client.messages.create(model=model, max_tokens=32, messages=messages)
    assert r.content and r.content[0].text, (model, r)

    with client.messages.stream(model=model, max_tokens=32, messages=messages) as stream:
        text = stream.get_final_text()
    assert text, (model, "empty stream")

    r = client.beta.messages.create(
        model=model,
        max_tokens=32,
        messages=messages,
        betas=["context-management-2025-06-27", "interleaved-thinking-2025-05-14", "unknown-flag-2099-01-01"],
    )
    assert r.content, (model, r)
    print(f"anthropic sdk -> {model}: ok")

# /v1/messages on an OpenAI model: translated to Chat Completions and back.
r = client.messages.create(model="gpt-4o", max_tokens=32, messages=messages)
assert r.content and r.content[0].text and r.stop_reason == "end_turn", r
with client.messages.stream(model="gpt-4o", max_tokens=32, messages=messages) as stream:
    final = stream.get_final_message()
assert final.content and final.content[0].text and final.usage.output_tokens > 0, final
print("anthropic sdk -> gpt-4o (openai, translated): ok")
