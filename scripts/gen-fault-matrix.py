#!/usr/bin/env python3
"""Writes scenarios/faults/: the fault matrix (issue #16), one scenario per upstream behaviour.

Every behaviour in the table `B` below (reset, no answer, slow first byte, first event late, slow body, a stream cut or
that just stops, half a JSON body, HTML, 429, 500, 503) is put on every entry point and stream mode
(chat to OpenAI and to Claude, Anthropic's messages, embeddings, the Responses API and legacy
completions; plain and streamed), each with what
the client must get and the bound it must get it within. One scenario per behaviour, so that in
target mode a gateway that fails one behaviour is still judged on the others.

Run from anywhere: `python3 scripts/gen-fault-matrix.py`; commit the YAML it writes.
"""
import json, os

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
def q(s): return "'"+s.replace("'","''")+"'"
def oa_chunk(c, first=False):
    return json.dumps({"id":"chatcmpl-f","object":"chat.completion.chunk","created":1764000009,"model":"gpt-4o","choices":[{"index":0,"delta":({"role":"assistant","content":c} if first else {"content":c}),"finish_reason":None}]},separators=(',',':'))
oa_stop=json.dumps({"id":"chatcmpl-f","object":"chat.completion.chunk","created":1764000009,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]},separators=(',',':'))
an_events=[
 ("message_start",'{"type":"message_start","message":{"id":"msg_f","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":8,"output_tokens":1}}}'),
 ("content_block_start",'{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'),
 ("content_block_delta",'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Once upon"}}'),
 ("content_block_delta",'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" a time"}}'),
 ("content_block_stop",'{"type":"content_block_stop","index":0}'),
 ("message_delta",'{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":4}}'),
 ("message_stop",'{"type":"message_stop"}'),
]
def latency(ms): return '{fault: {latency: {ms: %d, then: {json: {body: {}}}}}}'%ms
def oa_sse(events, cut=None):
    out='\n          sse:\n'
    if cut is not None: out+='            cut_after: %d\n'%cut
    out+='            events:\n'
    for d,delay in events:
        out+=('              - {data: %s, delay_ms: %d}\n'%(q(d),delay)) if delay else ('              - data: %s\n'%q(d))
    return out.rstrip()
def an_sse(evs, delay_at=None, cut=None):
    out='\n          sse:\n'
    if cut is not None: out+='            cut_after: %d\n'%cut
    out+='            events:\n'
    for i,(e,d) in enumerate(evs):
        out+=('              - {event: %s, data: %s, delay_ms: 2000}\n'%(e,q(d))) if delay_at==i else ('              - {event: %s, data: %s}\n'%(e,q(d)))
    return out.rstrip()
ERR5='{status_class: 5xx, error_present: true, within_ms: 3000}'
ERRT='{status_class: [4xx, 5xx], error_present: true, within_ms: 3000}'
BROKEN='{stream_complete: false, within_ms: 3000}'
# name: (title, description, openai nonstream, openai stream, anthropic nonstream, anthropic stream, expect nonstream, expect stream)
B=[
 ('reset','connection reset','The provider resets the connection before answering: every entry point gets a 5xx error (before a stream starts, so no stream at all), within the bound.', '{fault: reset}','{fault: reset}','{fault: reset}','{fault: reset}', ERR5, ERR5),
 ('never-answers','no answer','The provider never answers (it would after 30 s; the deployment times out after 0.3 s): every entry point gets a timeout error (504; 408 is a timeout too), within the bound.', latency(30000), latency(30000), latency(30000), latency(30000), ERRT, ERRT),
 ('slow-first-byte','slow first byte','The provider answers after 2 s, past the 0.3 s timeout (and stream_timeout): a timeout error on every entry point, within the bound, and never the late answer.', latency(2000), latency(2000), latency(2000), latency(2000), ERRT, ERRT),
 ('slow-first-event','first event late','The provider sends its stream headers at once and its first event 2 s later, past the 0.3 s stream_timeout: the client never sees a clean end (an error status before any stream, or an error event after its start), within the bound.', None, oa_sse([(oa_chunk("Once",True),2000),(oa_stop,0),('[DONE]',0)]), None, an_sse(an_events, delay_at=0), None, BROKEN),
 ('slow-body','slow body','A stream whose second event comes 2 s late, past the 0.3 s stream_timeout: the client has the first events and then an error, never a clean end, within the bound.', None, oa_sse([(oa_chunk("Once",True),0),(oa_chunk(" upon"),2000),(oa_stop,0),('[DONE]',0)]), None, an_sse(an_events, delay_at=3), None, BROKEN),
 ('cut-stream','stream cut mid-event','A stream cut in the middle of an event (the connection closed): the client never sees a clean end.', None, oa_sse([(oa_chunk("Once",True),0),(oa_chunk(" upon"),0),('[DONE]',0)], cut=1), None, an_sse(an_events, cut=3), None, BROKEN),
 ('no-terminator','stream without terminator','A stream that just stops, the connection closed cleanly, with no [DONE] or message_stop: the client never sees a clean end.', None, oa_sse([(oa_chunk("Once",True),0)]), None, an_sse(an_events[:3]), None, BROKEN),
 ('malformed-json','half a JSON body','A 200 whose JSON body is cut in half: a 5xx error (the upstream failed, not the request).', '{fault: malformed}', None, '{fault: malformed}', None, ERR5, None),
 ('html','HTML instead of JSON or a stream','A 200 HTML page (a load balancer''s maintenance page) instead of JSON or an event stream: a 5xx error for plain calls; a stream never ends cleanly (the contracts judge it).', "{raw: {status: 200, body: '<html><body>maintenance</body></html>', content_type: text/html}}", "{raw: {status: 200, body: '<html><body>maintenance</body></html>', content_type: text/html}}", "{raw: {status: 200, body: '<html><body>maintenance</body></html>', content_type: text/html}}", "{raw: {status: 200, body: '<html><body>maintenance</body></html>', content_type: text/html}}", ERR5, '{within_ms: 3000}'),
 ('huge-body','a body over the read limit','A 200 whose JSON body is 70 MiB, more than a gateway should hold in memory for one answer (postmortem reads at most 64 MiB): a translation cannot read it and answers a 5xx; a pass-through may relay it, within 10 s.', '{fault: {huge: {bytes: 73400320}}}', None, '{fault: {huge: {bytes: 73400320}}}', None, ERR5, None),
 ('huge-error','an error body over the read limit','A 500 whose body is 70 MiB: the client gets a 5xx error within the bound (a gateway reads the start of an error body, not all of it).', '{fault: {huge: {bytes: 73400320, status: 500}}}', None, '{fault: {huge: {bytes: 73400320, status: 500}}}', None, ERR5, None),
 ('rate-limited','429 with Retry-After','The provider answers 429 with Retry-After: the client gets a 429 with a Retry-After (errors.retry-after checks it is the provider''s), within the bound.', '{fault: {rate_limited: {retry_after_secs: 7}}}','{fault: {rate_limited: {retry_after_secs: 7}}}','{fault: {rate_limited: {retry_after_secs: 7}}}','{fault: {rate_limited: {retry_after_secs: 7}}}', '{status: 429, error_present: true, headers_present: [retry-after], within_ms: 3000}', '{status: 429, error_present: true, headers_present: [retry-after], within_ms: 3000}'),
 ('server-error','500','The provider answers 500 (its own error body): a 5xx error on every entry point, within the bound.', '{fault: {status: {code: 500}}}','{fault: {status: {code: 500}}}','{fault: {status: {code: 500}}}','{fault: {status: {code: 500}}}', ERR5, ERR5),
 ('unavailable','503','The provider answers 503 (its own error body): a 5xx error on every entry point, within the bound.', '{fault: {status: {code: 503}}}','{fault: {status: {code: 503}}}','{fault: {status: {code: 503}}}','{fault: {status: {code: 503}}}', ERR5, ERR5),
]
GATEWAY='''gateway:
  model_list:
    - model_name: gpt-4o
      litellm_params: {model: openai/gpt-4o, api_base: "${providers.openai.url}/v1", api_key: test-openai-credential, timeout: 0.3, stream_timeout: 0.3}
    - model_name: text-embedding-3-small
      litellm_params: {model: openai/text-embedding-3-small, api_base: "${providers.openai.url}/v1", api_key: test-openai-credential, timeout: 0.3}
    - model_name: claude
      litellm_params: {model: anthropic/claude-sonnet-4-5, api_base: "${providers.claude.url}", api_key: test-anthropic-credential, timeout: 0.3, stream_timeout: 0.3}
  # One attempt per request, and no deployment taken out of rotation by the previous step's fault.
  router_settings: {num_retries: 0, disable_cooldowns: true}
'''
def chat(model,stream): return '{path: /v1/chat/completions, body: {model: %s, stream: %s, messages: [{role: user, content: tell a story}]}}'%(model,'true' if stream else 'false')
def msgs(stream): return '{path: /v1/messages, headers: {anthropic-version: "2023-06-01"}, body: {model: claude, max_tokens: 64, stream: %s, messages: [{role: user, content: tell a story}]}}'%('true' if stream else 'false')
EMB='{path: /v1/embeddings, body: {model: text-embedding-3-small, input: hello}}'
def responses(stream): return '{path: /v1/responses, body: {model: gpt-4o, stream: %s, input: tell a story}}'%('true' if stream else 'false')
COMPLETIONS='{path: /v1/completions, body: {model: gpt-4o, prompt: tell a story}}'
os.makedirs('scenarios/faults', exist_ok=True)
for f in os.listdir('scenarios/faults'): os.remove(os.path.join('scenarios/faults',f))
for (name,title,desc,ons,ost,ans,ast,ens,est) in B:
    L=['# Written by scripts/gen-fault-matrix.py from its table: change the table, then run it.','name: fault-%s'%name,'tags: [faults, openai, anthropic%s]'%(', streaming' if ost else ''),'description: >']
    timing = ('No deployment timeout is set (the fault is the read limit, not time), so only the step\'s bound of 10 s judges time (70 MiB to generate, send and read, on a loaded machine);'
              if name.startswith('huge-') else
              'Deployments time out after 0.3 s, so the bound of 3 s leaves room for a gateway\'s own work and none for an unbounded wait;')
    L.append('  Fault matrix, %s. %s %s the contracts judge the rest.'%(title,desc,timing))
    L.append('providers:')
    for (mock, kind, plain, streamed) in [('openai', 'openai', ons, ost), ('claude', 'anthropic', ans, ast)]:
        L.append('  %s:\n    kind: %s\n    stubs:' % (mock, kind))
        if plain and plain == streamed:
            L.append('      - response: %s' % plain)
            continue
        # The first stub that matches answers: streams first, then the rest.
        if streamed:
            L.append('      - match: {body_contains_json: {stream: true}}\n        response:%s' % (streamed if streamed.startswith('\n') else ' ' + streamed))
        if plain:
            L.append('      - response: %s' % plain)
    gateway = GATEWAY
    if name.startswith('huge-'):
        # A 70 MiB answer starts at once and keeps coming: whether a deployment's `timeout` bounds
        # the whole body or each read is a gateway's reading of the setting, not what this fault
        # is about (the read limit). No timeout here, so only the bound of the step judges time.
        gateway = gateway.replace(', timeout: 0.3, stream_timeout: 0.3}', '}').replace(', timeout: 0.3}', '}')
    L.append(gateway.rstrip('\n'))
    L.append('steps:')
    steps=[]
    if ens:
        # A pass-through may relay a provider's success body as it came (the contracts excuse a
        # relayed departure); only a translation must refuse one it cannot read. For a huge body
        # the pass-through routes are held to a bound alone.
        relay = '{within_ms: 10000}' if name == 'huge-body' else ens
        if name.startswith('huge-'):
            # Reading to the limit is 64 MiB through a debug build under a parallel test run:
            # 3 s was missed once (a wall-clock flake, not a hang); 10 s still bounds it.
            ens = ens.replace('within_ms: 3000', 'within_ms: 10000')
        steps.append(('chat to OpenAI', chat('gpt-4o',False), relay))
        steps.append(('chat to Claude (translated)', chat('claude',False), ens))
        steps.append(('messages to Claude', msgs(False), relay))
        steps.append(('embeddings', EMB, relay))
        steps.append(('responses to OpenAI', responses(False), relay))
        steps.append(('legacy completions to OpenAI', COMPLETIONS, relay))
    if est:
        steps.append(('chat to OpenAI, streamed', chat('gpt-4o',True), est))
        steps.append(('chat to Claude (translated), streamed', chat('claude',True), est))
        steps.append(('messages to Claude, streamed', msgs(True), est))
        # A fault that is not an event stream (a reset, a delay, an error status) is the same on
        # any route; the streamed behaviours' events are Chat Completions chunks, which are no
        # Responses stream, so those stay on the chat route.
        if ost == ons:
            steps.append(('responses to OpenAI, streamed', responses(True), est))
    for (n,r,e) in steps:
        L.append('  - name: %s\n    request: %s\n    expect: %s'%(n,r,e))
    open('scenarios/faults/%s.yaml'%name,'w').write('\n'.join(L)+'\n')
print('\n'.join(sorted(os.listdir('scenarios/faults'))))
