"""Server limits and what clients see: body size (413), nesting depth and message count (400),
a prompt cut before it is tokenized, a seeded fuzz of malformed bodies (only 4xx, the server lives),
the official `openai` client (plain and streamed, tool calls as readable lines, no markup) and the
window's rendering (text as typed, tool calls as fenced blocks)."""

from __future__ import annotations

import json
import os
import random
import socket

import httpx
import pytest
from test_engine import ScriptedModel, make_tokenizer, tool_script

from llmstack.chat.api import ChatDefaults, ServerLimits
from llmstack.chat.messages import to_conversation, trim_conversation
from llmstack.chat.render import StreamedText, api_text, escape_markdown, from_window, segments, window_markdown
from llmstack.chat.resolve import EnginePool
from llmstack.engine import Engine

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning")]  # fmt: skip

RAW = "6*7 and 8*9: <|python_start|>45-12<|python_end|><|output_start|>33<|output_end|> so #### 33"
API = "6*7 and 8*9: \npython: 45-12 → 33\n so #### 33"
LIMITS = ServerLimits(max_body_bytes=64 * 1024, max_messages=8, max_depth=8, prompt_chars_per_token=4)
SEQ_LEN = 256  # ScriptedModel's context: prompts are cut to 4 * 256 characters before tokenizing


class SpyTokenizer:
    """The real tokenizer, recording how many characters each rendered conversation held."""

    def __init__(self, tok) -> None:
        self._tok, self.rendered = tok, []

    def render_for_completion(self, conversation):
        self.rendered.append(sum(len(str(m["content"])) for m in conversation["messages"]))
        return self._tok.render_for_completion(conversation)

    def __getattr__(self, name):
        return getattr(self._tok, name)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from llmstack.chat.app import launch

    tok = make_tokenizer(tmp_path_factory.mktemp("tok"))
    script, _, _ = tool_script(tok, "6*7 and 8*9: ", "45-12", " so #### 33", "33")
    model = ScriptedModel(script, tok, seq_len=SEQ_LEN)
    spy = SpyTokenizer(tok)
    pool = EnginePool({"sft": Engine(model, spy)})  # type: ignore[arg-type]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    defaults = ChatDefaults(temperature=0.0, top_k=0, max_new_tokens=64, limits=LIMITS)
    app = launch(pool, "sft", defaults, port=port, block=False)
    yield app.local_url.rstrip("/"), spy, model
    app.close()


def post(url: str, body: bytes | dict, timeout: float = 30) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{url}/v1/chat/completions", content=content, timeout=timeout,
                      headers={"Content-Type": "application/json"})  # fmt: skip


def ask(text: str = "What is 45-12?", **extra) -> dict:
    return {"model": "sft", "messages": [{"role": "user", "content": text}], **extra}


# ---------------------------------------------------------------------------------- the limits


def test_oversized_body_gets_413_without_being_parsed(server):
    url, spy, _ = server
    before = len(spy.rendered)
    r = post(url, json.dumps(ask("x" * (20 * 2**20))).encode(), timeout=60)  # 20 MB, as in the issue
    assert r.status_code == 413 and "limit of 65536 bytes" in r.json()["error"]["message"]
    assert len(spy.rendered) == before  # never reached the tokenizer
    assert post(url, ask()).status_code == 200  # and the server still answers


@pytest.mark.parametrize("depth", [9, 50, 100_000])
def test_deep_nesting_gets_400(server, depth):
    url, _, _ = server
    nested = "[" * depth + "]" * depth
    body = f'{{"model": "sft", "messages": [{{"role": "user", "content": "hi"}}], "extra": {nested}}}'.encode()
    if len(body) > LIMITS.max_body_bytes:  # a raw nest, no object around it: the parser's own refusal
        body = ("[" * (LIMITS.max_body_bytes // 2)).encode()
    r = post(url, body)
    assert r.status_code == 400 and "nested deeper than 8" in r.json()["error"]["message"]


def test_nesting_up_to_the_limit_is_fine(server):
    url, _, _ = server
    extra = json.loads("[" * 6 + "]" * 6)  # the body object is level 1, so this reaches level 7
    r = post(url, ask(extra=extra, max_tokens=2))
    assert r.status_code == 200, r.text


def test_too_many_messages_get_400(server):
    url, _, _ = server
    messages = [{"role": "user", "content": f"line {i}"} for i in range(LIMITS.max_messages + 1)]
    r = post(url, {"model": "sft", "messages": messages})
    assert r.status_code == 400 and "at most 8 messages" in r.json()["error"]["message"]
    assert post(url, {"model": "sft", "messages": messages[:8], "max_tokens": 2}).status_code == 200


def test_long_prompt_is_cut_before_tokenizing(server):
    url, spy, _ = server
    text = "".join(f"word{i} " for i in range(5000))  # ~40 kB: under the body limit, far over the context
    r = post(url, {"model": "sft", "max_tokens": 4, "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]})  # fmt: skip
    assert r.status_code == 200, r.text
    assert spy.rendered[-1] <= LIMITS.prompt_chars_per_token * SEQ_LEN  # the tokenizer saw the cut text only
    notice = r.json()["llmstack_notice"]
    assert "characters" in notice and "over this server's limit of 1024" in notice


def test_trim_conversation_keeps_the_newest_text():
    conv = to_conversation([{"role": "system", "content": "S" * 10}, {"role": "user", "content": "old"},
                            {"role": "assistant", "content": "answer"},
                            {"role": "user", "content": "abcdefgh"}])  # fmt: skip
    same, notice = trim_conversation(conv, 100)
    assert same == conv and notice is None
    cut, notice = trim_conversation(conv, 20)
    assert [m["content"] for m in cut["messages"]] == ["SSS", "old", "answer", "abcdefgh"]
    assert "the prompt was 27 characters" in notice and "oldest 7 characters" in notice
    cut, _ = trim_conversation(conv, 12)  # "swer" would lead: an assistant never starts a conversation
    assert cut["messages"] == [{"role": "user", "content": "abcdefgh"}]
    tail, _ = trim_conversation(conv, 3)
    assert tail["messages"] == [{"role": "user", "content": "fgh"}]  # the question's end always stays


# ------------------------------------------------------------------------------------ the fuzz


def _malformed(rng: random.Random) -> bytes:
    """One request body that no valid reading accepts: each case breaks one thing a client can."""
    good = ask("hi", max_tokens=2)
    msg = {"role": "user", "content": "hi"}
    number_fields = ["temperature", "top_p", "top_k", "n", "max_tokens", "seed"]
    bad_numbers = ["hot", [], {}, True, -1, 10**30, -(10**30), 1.5e308 * 10]  # the last is inf
    bad_roles = ["tool", "", None, 5, ["user"], "USER"]
    bad_contents = ["", "   \n", [], None, 5, {"a": 1}, [{"type": "image_url"}], [{"type": "text", "text": 5}], [None]]
    cases = [
        lambda: bytes(rng.randrange(256) for _ in range(rng.randint(0, 200))),
        lambda: json.dumps(rng.choice([None, 1, 2.5, "s", [], [1, 2], True])).encode(),
        lambda: json.dumps({**good, "messages": rng.choice([None, 3, "hi", {}, [], [None], [[]], [1.5]])}).encode(),
        lambda: json.dumps({**good, rng.choice(number_fields): rng.choice(bad_numbers)}).encode(),
        lambda: json.dumps({**good, "max_tokens": int("9" * rng.randint(20, 4000))}).encode(),
        lambda: json.dumps({**good, "temperature": float("nan")}).encode(),  # NaN is not JSON: must be refused
        lambda: ("[" * rng.randint(9, 30000)).encode(),
        lambda: ('{"messages": ' + "[" * rng.randint(9, 3000) + "]" * rng.randint(0, 3000) + "}").encode(),
        lambda: json.dumps({**good, "messages": [{**msg, "role": rng.choice(bad_roles)}]}).encode(),
        lambda: json.dumps({**good, "messages": [{**msg, "content": rng.choice(bad_contents)}]}).encode(),
        lambda: json.dumps({**good, "messages": [{"role": "assistant", "content": "hello"}]}).encode(),
        lambda: json.dumps({**good, "messages": [msg] * rng.randint(9, 300)}).encode(),
        lambda: json.dumps({**good, "stream": rng.choice(["yes", 1, 0, [], {}])}).encode(),
        lambda: json.dumps({**good, "stream_options": rng.choice(["x", 5, [1]]), "stream": True}).encode(),
        lambda: json.dumps({**good, "model": rng.choice([5, [], {}, True])}).encode(),
        lambda: json.dumps(good).encode()[: rng.randint(1, 40)],  # cut short
        lambda: b"\xff\xfe" + json.dumps(good).encode() + bytes([rng.randrange(128, 256)]),
        lambda: b'{"messages": [{"role": "user", "content": "\xc3("}]}',  # not UTF-8
    ]
    return rng.choice(cases)()


def test_fuzz_malformed_bodies_get_only_4xx(server):
    url, _, _ = server
    rng = random.Random(1234)
    statuses = []
    with httpx.Client(timeout=30) as client:
        for _ in range(200):
            body = _malformed(rng)
            r = client.post(f"{url}/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
            assert 400 <= r.status_code < 500, (body[:200], r.status_code, r.text[:300])
            assert r.json()["error"]["message"]  # an OpenAI-shaped error, not a stack trace
            statuses.append(r.status_code)
    assert set(statuses) <= {400, 413}
    assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 200  # still alive
    assert post(url, ask(max_tokens=2)).status_code == 200


# ------------------------------------------------------------------------- the openai client


def test_openai_client_plain_and_streamed(server):
    openai = pytest.importorskip("openai", reason="the openai client is not installed (pip install -e .[dev])")
    url, _, _ = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="anything")
    messages = [{"role": "user", "content": "What is 45-12?"}]
    plain = client.chat.completions.create(model="sft", messages=messages, temperature=0)
    assert plain.choices[0].message.content == API and plain.choices[0].finish_reason == "stop"
    assert plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens
    stream = client.chat.completions.create(model="sft", messages=messages, temperature=0, stream=True)
    deltas = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(deltas) == API and len(deltas) > 5  # streamed, and no delta ever held markup
    assert not any("<|" in d for d in deltas)
    with pytest.raises(openai.BadRequestError, match="at most 8 messages"):
        client.chat.completions.create(model="sft", messages=messages * 9)


def test_readable_tool_lines_sent_back_are_tool_calls(server):
    url, spy, model = server
    history = [{"role": "user", "content": "What is 45-12?"}, {"role": "assistant", "content": API},
               {"role": "user", "content": "And 6*7?"}]  # fmt: skip
    r = post(url, {"model": "sft", "messages": history, "max_tokens": 2})
    assert r.status_code == 200, r.text
    prefill = next(f[0] for f in reversed(model.fed) if len(f[0]) > 1)
    tok = spy._tok
    assert prefill.count(tok.special_id("<|python_start|>")) == 1  # the line became a call again
    assert prefill.count(tok.special_id("<|output_start|>")) == 1


# ---------------------------------------------------------------------------------- rendering


def test_api_text_has_no_markup_and_streams_prefix_stable():
    assert api_text(RAW) == API
    assert api_text("a<|user_end|>b<|bos|>") == "ab"  # stray special tokens are dropped
    pieces = [p for p in RAW.replace("<|", "\0<|").replace("|>", "|>\0").split("\0") if p]
    chars = [c for p in pieces for c in ([p] if p.startswith("<|") else p)]  # specials arrive whole
    stream, sent, shown = StreamedText(), "", ""
    for c in chars:
        sent += stream.push(c)
        now = api_text(stream.raw)
        assert now.startswith(shown)  # nothing sent is ever taken back
        shown = now
    assert sent == API


@pytest.mark.parametrize("text", ["6*7 and 8*9", "#### 6", "a_b_c and __init__", "<b>x</b> & 3<5",
                                  "    indented\n\tcode = [1, 2]  # note", "`tick` \\n $$x$$ ~~no~~ 1. item",
                                  "&nbsp; \\&nbsp;", ""])  # fmt: skip
def test_window_escaping_is_exact(text):
    assert from_window(escape_markdown(text)) == text
    assert from_window(window_markdown(text)) == text


def test_window_shows_tool_calls_as_blocks():
    shown = window_markdown(RAW)
    assert shown.startswith("6\\*7 and 8\\*9\\: ") and "\\#\\#\\#\\# 33" in shown
    assert "\n\n```\npython: 45-12 → 33\n```\n\n" in shown
    assert from_window(shown) == RAW
    streaming = window_markdown("Let me see <|python_start|>45-1")  # an open call shows what is known
    assert streaming.endswith("```\npython: 45-1\n```\n\n")
    ticks = window_markdown("<|python_start|>'```'.count('`')<|python_end|><|output_start|>3<|output_end|>")
    assert ticks.startswith("\n\n````\n") and from_window(ticks).count("<|python_start|>") == 1
    assert [s.expr for s in segments(RAW)] == [None, "45-12", None]
