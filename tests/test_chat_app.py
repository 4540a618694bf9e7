"""Chat front ends: finding a run's models, the `llmstack chat` command, message conversion, the
OpenAI-compatible endpoint (plain and streamed, malformed requests) and the running Gradio app
driven through gradio_client (a streamed reply, two chats at once, history, an empty message)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from test_engine import ScriptedModel, make_run, tool_script

from llmstack.chat.render import api_text, from_window, window_markdown
from llmstack.chat.resolve import EnginePool, ResolveError, resolve_models
from llmstack.cli import main
from llmstack.engine import Engine

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# gradio 6.31's queue calls pandas options that pandas 3 deprecates; not ours to fix
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning")]  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("project")
    return root, make_run(root)  # pretrain and sft trained; midtrain and rl not yet


# ------------------------------------------------------------------------------ finding models


def test_default_is_the_most_trained_stage(project):
    root, _ = project
    choices, default = resolve_models(root)
    assert default == "sft" and list(choices) == ["sft", "base"]
    stages = json.loads((root / "runs/tiny/run.json").read_text())["stages"]
    assert choices["base"].model_path == root / stages["pretrain"] / "model.pt"
    assert choices["sft"].tokenizer_path.name == "tokenizer.model" and choices["sft"].run == "tiny"
    assert resolve_models(root, run="tiny", stage="base")[1] == "base"
    assert resolve_models(root, stage="pretrain")[1] == "base"  # the workflow's stage name works too


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(stage="rl"), "has no rl model yet"),
        (dict(stage="midtrain"), "snakemake --cores all"),
        (dict(stage="final"), "unknown stage"),
        (dict(run="nope"), "known runs: tiny"),
        (dict(model="m.pt"), "give both files"),
        (dict(model="missing.pt", tokenizer="missing.model"), "model file not found"),
    ],
)
def test_resolve_errors_are_one_line(project, kwargs, message):
    with pytest.raises(ResolveError, match=message) as err:
        resolve_models(project[0], **kwargs)
    assert "\n" not in str(err.value)


def test_nothing_trained_yet(tmp_path):
    with pytest.raises(ResolveError, match="no trained run"):
        resolve_models(tmp_path)
    make_run(tmp_path, run="fresh", trained=())
    with pytest.raises(ResolveError, match="has no trained model yet"):
        resolve_models(tmp_path)


def test_newest_run_wins_and_direct_files_work(tmp_path):
    make_run(tmp_path, run="old")
    time.sleep(0.02)
    make_run(tmp_path, run="new", trained=("pretrain",))
    choices, default = resolve_models(tmp_path)
    assert default == "base" and choices["base"].run == "new"
    model, tok = choices["base"].model_path, choices["base"].tokenizer_path
    choices, default = resolve_models(model=model, tokenizer=tok)
    assert default == "model" and choices["model"].model_path == model


def test_chat_command_one_shot_and_errors(project, tmp_path, capsys):
    root, _ = project
    assert main(["chat", "--project", str(root), "-p", "Hello", "--max-tokens", "6", "--seed", "0"]) == 0
    assert capsys.readouterr().out.endswith("\n")
    assert main(["chat", "--project", str(root), "-p", "   "]) == 2
    assert "prompt is empty" in capsys.readouterr().err
    assert main(["chat", "--project", str(tmp_path), "-p", "hi"]) == 2
    assert "no trained run" in capsys.readouterr().err
    assert main(["serve", "--project", str(tmp_path)]) == 2  # fails before any server starts
    assert "snakemake --cores all" in capsys.readouterr().err


# -------------------------------------------------------------------------- message conversion


def test_to_conversation_merges_and_parses_tool_calls():
    from llmstack.chat.app import to_conversation

    conv = to_conversation([
        {"role": "assistant", "content": "Hi! Ask me anything."},  # a greeting before the user: dropped
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is "}, {"type": "text", "text": "12*7?"}]},
        {"role": "assistant", "content": "<|python_start|>12*7<|python_end|><|output_start|>84<|output_end|> 84."},
        {"role": "user", "content": "And <|python_start|>1+1<|python_end|>?"},
        {"role": "user", "content": "thanks"},
    ])  # fmt: skip
    assert conv["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 12*7?"},
        {"role": "assistant", "content": [{"type": "python", "text": "12*7"}, {"type": "python_output", "text": "84"},
                                          {"type": "text", "text": " 84."}]},
        {"role": "user", "content": "And <|python_start|>1+1<|python_end|>?\n\nthanks"},  # user text stays text
    ]  # fmt: skip


# --------------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def scripted(project):
    """A model whose reply is known: it calls the tool for 12*7 and says so (20 ms per step)."""
    _, tok = project
    script, _, _ = tool_script(tok, "Let me compute. ", "12*7", " So it is 84.", "84")
    return ScriptedModel(script, tok, delay_s=0.02)


SCRIPTED_REPLY = "Let me compute. <|python_start|>12*7<|python_end|><|output_start|>84<|output_end|> So it is 84."
SCRIPTED_API = "Let me compute. \npython: 12*7 → 84\n So it is 84."  # what API clients get


@pytest.fixture(scope="module")
def server(project, scripted):
    from llmstack.chat.app import ChatDefaults, launch

    root, tok = project
    choices, default = resolve_models(root)
    pool = EnginePool({**choices, "scripted": Engine(scripted, tok)}, device="cpu")
    app = launch(pool, default, ChatDefaults(temperature=0.0, top_k=0, max_new_tokens=12), port=free_port(),
                 block=False)  # fmt: skip
    yield SimpleServer(app.local_url.rstrip("/"), pool)
    app.close()


class SimpleServer:
    def __init__(self, url: str, pool: EnginePool) -> None:
        self.url, self.pool = url, pool


def openai_payload(**extra) -> dict:
    """The payload shape the official OpenAI client sends for chat.completions.create(...)."""
    return {"model": "sft", "messages": [{"role": "system", "content": "You are helpful."},
                                         {"role": "user", "content": "Hello there"}],
            "max_tokens": 10, "temperature": 0, "top_p": 1, "n": 1, "stream": False, **extra}  # fmt: skip


def read_sse(response: httpx.Response) -> list:
    events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_openai_endpoint_answers(server):
    r = httpx.post(f"{server.url}/v1/chat/completions", json=openai_payload(), timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-") and body["model"] == "sft"
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    # greedy: the same text the engine gives directly for this conversation
    messages = openai_payload()["messages"]
    direct = api_text(server.pool.get("sft").chat({"messages": messages}, max_tokens=10, temperature=0).read())
    assert choice["message"]["content"] == direct
    nucleus_of_one = openai_payload(temperature=1.5, top_p=0)  # top_p 0 leaves the argmax alone: greedy
    r = httpx.post(f"{server.url}/v1/chat/completions", json=nucleus_of_one, timeout=30)
    assert r.json()["choices"][0]["message"]["content"] == direct


def test_openai_endpoint_streams(server):
    plain = httpx.post(f"{server.url}/v1/chat/completions", json=openai_payload(), timeout=30).json()
    payload = openai_payload(stream=True, stream_options={"include_usage": True})
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=payload, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        chunks = read_sse(r)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] in ("stop", "length")
    assert chunks[-1]["usage"] == plain["usage"]


def test_openai_endpoint_samples_n_with_a_seed_and_runs_tools(server):
    payload = openai_payload(model="base", n=3, temperature=1.0, seed=7)
    first = httpx.post(f"{server.url}/v1/chat/completions", json=payload, timeout=30).json()
    again = httpx.post(f"{server.url}/v1/chat/completions", json=payload, timeout=30).json()
    assert [c["index"] for c in first["choices"]] == [0, 1, 2] and first["model"] == "base"
    assert [c["message"] for c in first["choices"]] == [c["message"] for c in again["choices"]]
    tool = httpx.post(f"{server.url}/v1/chat/completions", json=openai_payload(model="scripted", max_tokens=200),
                      timeout=30).json()  # fmt: skip
    assert tool["choices"][0]["message"]["content"] == SCRIPTED_API
    assert tool["choices"][0]["finish_reason"] == "stop"
    models = httpx.get(f"{server.url}/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["sft", "base", "scripted"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"model": "sft"}).encode(), "'messages' is required"),
        (json.dumps({"messages": "hi"}).encode(), "non-empty list"),
        (json.dumps({"messages": []}).encode(), "non-empty list"),
        (json.dumps({"messages": [{"role": "user"}]}).encode(), "no 'content'"),
        (json.dumps({"messages": [{"role": "tool", "content": "x"}]}).encode(), "not supported"),
        (json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}).encode(), "text content"),
        (json.dumps({"messages": [{"role": "assistant", "content": "hi"}]}).encode(), "last message"),
        (json.dumps({**openai_payload(), "temperature": "hot"}).encode(), "'temperature' must be a number"),
        (json.dumps({**openai_payload(), "n": 100}).encode(), "'n' must be between"),
        (json.dumps({**openai_payload(), "max_tokens": 0}).encode(), "'max_tokens' must be between"),
        (json.dumps({**openai_payload(), "stream": "yes"}).encode(), "'stream' must be"),
    ],
)
def test_openai_endpoint_rejects_malformed_requests(server, body, message):
    r = httpx.post(f"{server.url}/v1/chat/completions", content=body, timeout=10,
                   headers={"Content-Type": "application/json"})  # fmt: skip
    assert 400 <= r.status_code < 500
    assert message in r.json()["error"]["message"]


def test_gradio_client_streams_a_reply(server, scripted):
    from gradio_client import Client

    client = Client(server.url + "/", verbose=False)
    job = client.submit("What is 12*7?", "scripted", 0.0, 0, 100, api_name="/chat")
    partial = list(job)
    assert job.result() == window_markdown(SCRIPTED_REPLY) and from_window(job.result()) == SCRIPTED_REPLY
    assert len(set(partial)) > 3 and [len(p) for p in partial] == sorted(len(p) for p in partial)  # it streamed
    # the same client keeps the history: the second prompt holds the first exchange
    prefills_before = len([f for f in scripted.fed if len(f[0]) > 1])
    assert client.predict("And 2*2?", "scripted", 0.0, 0, 100, api_name="/chat") == window_markdown(SCRIPTED_REPLY)
    prefill = [f for f in scripted.fed if len(f[0]) > 1][prefills_before][0]
    tok = server.pool.get("scripted").tokenizer
    assert prefill.count(tok.special_id("<|user_start|>")) == 2
    assert prefill.count(tok.special_id("<|output_start|>")) == 1  # the earlier tool output, as parts
    assert "What is 12*7?" in tok.decode(prefill) and "And 2*2?" in tok.decode(prefill)  # unescaped


def test_gradio_two_chats_at_once(server, scripted):
    from gradio_client import Client

    results: dict[int, str] = {}

    def chat(i: int) -> None:
        results[i] = Client(server.url + "/", verbose=False).predict(f"chat {i}", "scripted", 0.0, 0, 100,
                                                                      api_name="/chat")  # fmt: skip

    n_before = len(scripted.calls)
    threads = [threading.Thread(target=chat, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == {0: window_markdown(SCRIPTED_REPLY), 1: window_markdown(SCRIPTED_REPLY)}
    spans = [(times[0], times[-1]) for times in list(scripted.calls.values())[n_before:]]
    assert len(spans) == 2
    (a0, a1), (b0, b1) = spans
    assert a0 < b1 and b0 < a1  # the two generations overlapped in time: the queue ran them together


def test_gradio_empty_message(server):
    from gradio_client import Client

    from llmstack.chat.app import EMPTY_MESSAGE_REPLY

    reply = Client(server.url + "/", verbose=False).predict("   ", "sft", 0.7, 50, 8, api_name="/chat")
    assert from_window(reply) == EMPTY_MESSAGE_REPLY


def test_window_history_holds_text_as_typed(server):
    from llmstack.chat.app import ChatDefaults, build_ui

    demo = build_ui(server.pool, "scripted", ChatDefaults())
    history = demo._append_message_to_history("6*7 and 8*9", [], "user")
    assert history[-1]["content"] != "6*7 and 8*9"  # escaped, so the Markdown window shows it as typed
    assert from_window(history[-1]["content"]) == "6*7 and 8*9"
    history = demo._append_message_to_history(window_markdown(SCRIPTED_REPLY), history, "assistant")
    # as the Chatbot hands it back: each content a list of parts
    history = [{**m, "content": [{"type": "text", "text": m["content"]}]} for m in history]
    assert demo._pop_last_user_message(history) == ([], "6*7 and 8*9")  # retry / undo get the text as typed
