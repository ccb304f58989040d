//! The streaming family: framing, termination, no false completion, the
//! include_usage chunk.

use crate::common::*;
use postmortem::mocks::AnswerEnd;
use serde_json::{json, Value};

fn stream_body() -> Value {
    json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]})
}

fn chunks() -> Vec<Value> {
    vec![
        chunk(json!({"role": "assistant", "content": "Hel"}), Value::Null),
        chunk(json!({"content": "lo"}), json!("stop")),
    ]
}

fn with_done(mut v: Vec<Value>) -> Vec<Value> {
    v.push(json!("[DONE]"));
    v
}

fn provider_stream(events: &[Value], end: AnswerEnd) -> postmortem::mocks::MockAnswer {
    let mut a = answer(200, "text/event-stream", openai_sse(events));
    a.end = end;
    a
}

/// Claude's stream that stops after its first text delta: no
/// `content_block_stop`, no `message_delta`, no `message_stop`.
fn unterminated_claude() -> postmortem::contracts::UpstreamCall {
    let mut events = anthropic_events("Hel", "end_turn");
    events.truncate(3);
    let sent = json!({"model": "claude-x", "max_tokens": 4096, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    to_anthropic(sent, answer(200, "text/event-stream", anthropic_sse(&events)))
}

pub fn cases() -> Vec<Case> {
    let mid_stream_error = json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null}});
    let full = with_done(chunks());
    let usage_chunk = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}});
    let usage_body = json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi"}]});
    vec![
        case(
            "a stream passed through chunk for chunk",
            None,
            exchange(
                chat(stream_body()),
                sse_response(openai_sse(&full)),
                vec![to_openai(stream_body(), provider_stream(&full, AnswerEnd::Complete))],
            ),
        ),
        case(
            "an event whose data is not JSON",
            Some("stream.framing"),
            exchange(
                chat(stream_body()),
                sse_response([openai_sse(&chunks()), b"data: {oops\n\ndata: [DONE]\n\n".to_vec()].concat()),
                vec![],
            ),
        ),
        case(
            "a line that is not an SSE field",
            Some("stream.framing"),
            exchange(chat(stream_body()), sse_response([b"hello\n\n".to_vec(), openai_sse(&full)].concat()), vec![]),
        ),
        case(
            "a chunk that is not a chat.completion.chunk",
            Some("stream.framing"),
            exchange(
                chat(stream_body()),
                sse_response(openai_sse(&with_done(vec![json!({"choices": [{"delta": {"content": "x"}}]})]))),
                vec![],
            ),
        ),
        case(
            "the provider finished but the client never got [DONE]",
            Some("stream.termination"),
            exchange(
                chat(stream_body()),
                sse_response(openai_sse(&chunks())),
                vec![to_openai(stream_body(), provider_stream(&full, AnswerEnd::Complete))],
            ),
        ),
        case(
            "an event after [DONE]",
            Some("stream.termination"),
            exchange(chat(stream_body()), sse_response(openai_sse(&[full.clone(), chunks()].concat())), vec![]),
        ),
        case(
            "a cut provider stream ends cleanly for the client",
            Some("stream.no-false-completion"),
            exchange(
                chat(stream_body()),
                sse_response(openai_sse(&with_done(vec![chunks()[0].clone()]))),
                vec![to_openai(stream_body(), provider_stream(&chunks()[..1], AnswerEnd::Cut))],
            ),
        ),
        case(
            "a cut provider stream ends without [DONE] for the client",
            None,
            exchange(
                chat(stream_body()),
                {
                    let mut r = sse_response(openai_sse(&chunks()[..1]));
                    r.complete = false;
                    r
                },
                vec![to_openai(stream_body(), provider_stream(&chunks()[..1], AnswerEnd::Cut))],
            ),
        ),
        case(
            "an error the provider reported mid-stream becomes a clean end",
            Some("stream.no-false-completion"),
            exchange(
                chat(stream_body()),
                sse_response(openai_sse(&with_done(vec![chunks()[0].clone()]))),
                vec![to_openai(
                    stream_body(),
                    provider_stream(&[chunks()[0].clone(), mid_stream_error.clone()], AnswerEnd::Complete),
                )],
            ),
        ),
        case(
            "an error the provider reported mid-stream reaches the client",
            None,
            exchange(
                chat(stream_body()),
                sse_response(openai_sse(&[chunks()[0].clone(), mid_stream_error.clone()])),
                vec![to_openai(
                    stream_body(),
                    provider_stream(&[chunks()[0].clone(), mid_stream_error.clone()], AnswerEnd::Complete),
                )],
            ),
        ),
        case(
            "Anthropic's overloaded_error mid-stream, translated into a clean end",
            Some("stream.no-false-completion"),
            exchange(
                chat(stream_body()),
                sse_response(openai_sse(&with_done(vec![chunks()[0].clone()]))),
                vec![to_anthropic(
                    json!({"model": "claude-x", "max_tokens": 4096, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
                    {
                        let mut events = anthropic_events("Hel", "end_turn");
                        events.truncate(3);
                        events.push(
                            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
                        );
                        answer(200, "text/event-stream", anthropic_sse(&events))
                    },
                )],
            ),
        ),
        case(
            "an Anthropic stream that stopped before message_stop, translated into a clean end",
            Some("stream.no-false-completion"),
            exchange(
                chat(stream_body()),
                sse_response(openai_sse(&with_done(vec![chunks()[0].clone()]))),
                vec![unterminated_claude()],
            ),
        ),
        case(
            "an Anthropic stream that stopped before message_stop, reported to the client",
            None,
            exchange(
                chat(stream_body()),
                sse_response(openai_sse(&[chunks()[0].clone(), mid_stream_error.clone()])),
                vec![unterminated_claude()],
            ),
        ),
        case(
            "an HTML page from the provider becomes a clean empty stream",
            Some("stream.no-false-completion"),
            exchange(
                chat(stream_body()),
                sse_response(b"data: [DONE]\n\n".to_vec()),
                vec![to_openai(stream_body(), answer(200, "text/html", b"<html>maintenance</html>".to_vec()))],
            ),
        ),
        case(
            "include_usage: usage rides on a content chunk",
            Some("stream.include-usage"),
            exchange(
                chat(usage_body.clone()),
                sse_response(openai_sse(&with_done(vec![chunks()[0].clone(), {
                    let mut c = chunks()[1].clone();
                    c["usage"] = usage_chunk["usage"].clone();
                    c
                }]))),
                vec![],
            ),
        ),
        case(
            "include_usage: one empty-choices usage chunk last",
            None,
            exchange(
                chat(usage_body.clone()),
                sse_response(openai_sse(&with_done([chunks(), vec![usage_chunk.clone()]].concat()))),
                vec![],
            ),
        ),
        case("include_usage: the provider's own usage-on-a-content-chunk, relayed unchanged", None, {
            let events = with_done(vec![chunks()[0].clone(), {
                let mut c = chunks()[1].clone();
                c["usage"] = usage_chunk["usage"].clone();
                c
            }]);
            exchange(
                chat(usage_body.clone()),
                sse_response(openai_sse(&events)),
                vec![to_openai(usage_body.clone(), answer(200, "text/event-stream", openai_sse(&events)))],
            )
        }),
        case("an HTML page relayed as the answer to a streaming request", Some("schema.media-type"), {
            let mut r = sse_response(b"<html>maintenance</html>".to_vec());
            r.headers = vec![("content-type".into(), "text/html".into())];
            exchange(
                chat(stream_body()),
                r,
                vec![to_openai(stream_body(), answer(200, "text/html", b"<html>maintenance</html>".to_vec()))],
            )
        }),
        case(
            "include_usage: no usage at all",
            Some("stream.include-usage"),
            exchange(chat(usage_body), sse_response(openai_sse(&full)), vec![]),
        ),
        case(
            "a streamed answer labelled application/json",
            Some("schema.media-type"),
            exchange(
                chat(stream_body()),
                {
                    let mut r = sse_response(openai_sse(&full));
                    r.headers = vec![("content-type".into(), "application/json".into())];
                    r
                },
                vec![],
            ),
        ),
        case(
            "Anthropic events with a name that is not their type",
            Some("stream.framing"),
            exchange(
                anthropic_stream(),
                sse_response(
                    String::from_utf8(anthropic_sse(&anthropic_events("hi", "end_turn")))
                        .unwrap()
                        .replace("event: content_block_delta", "event: delta")
                        .into_bytes(),
                ),
                vec![],
            ),
        ),
        case(
            "Anthropic events without names",
            Some("stream.framing"),
            exchange(anthropic_stream(), sse_response(openai_sse(&anthropic_events("hi", "end_turn"))), vec![]),
        ),
        case(
            "a delta before its content block starts",
            Some("stream.termination"),
            exchange(
                anthropic_stream(),
                sse_response(anthropic_sse(&{
                    let mut e = anthropic_events("hi", "end_turn");
                    e.swap(1, 2);
                    e
                })),
                vec![],
            ),
        ),
        case(
            "an Anthropic stream passed through",
            None,
            exchange(
                anthropic_stream(),
                sse_response(anthropic_sse(&anthropic_events("hi", "end_turn"))),
                vec![to_anthropic(
                    json!({"model": "claude-x", "max_tokens": 8, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
                    answer(200, "text/event-stream", anthropic_sse(&anthropic_events("hi", "end_turn"))),
                )],
            ),
        ),
        case(
            "an Anthropic stream without message_stop",
            Some("stream.termination"),
            exchange(anthropic_stream(), sse_response(anthropic_sse(&anthropic_events("hi", "end_turn")[..5])), vec![]),
        ),
    ]
}

fn anthropic_stream() -> postmortem::contracts::ClientRequest {
    messages(
        json!({"model": "claude", "max_tokens": 8, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
}
