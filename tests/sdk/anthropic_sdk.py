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
