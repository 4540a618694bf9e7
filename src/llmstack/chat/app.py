"""The chat server: a streaming Gradio chat window and an OpenAI-compatible API on one port.

    llmstack serve [--run R] [--stage S] [--host H] [--port P]      # or: snakemake chat

    curl http://127.0.0.1:7860/v1/chat/completions -H 'Content-Type: application/json' \\
         -d '{"model": "sft", "messages": [{"role": "user", "content": "Hi"}], "stream": true}'

The window (`gr.ChatInterface`) streams each reply, keeps the multi-turn history, has a stop
button, and lets the user pick the model stage and the sampling settings; its queue runs several
chats at once (the engines hold no per-request state). `POST /v1/chat/completions` accepts the
OpenAI payload (model, messages, temperature, top_p, max_tokens / max_completion_tokens, n,
stream, seed, plus top_k) and answers in OpenAI's shapes, streamed as server-sent events when
`stream` is true; `GET /v1/models` lists the stages. `model` picks a stage by label; any other
name gets the default model, so clients with a hard-coded model name still work. Other OpenAI
fields (stop, logprobs, tools, penalties...) are accepted and ignored. A prompt cut to fit the
context is reported in an extra top-level field, `llmstack_notice`.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from llmstack.chat.resolve import EnginePool
from llmstack.conversation import Conversation

MAX_CHOICES = 8  # n per request: each is a sample in one batch
EMPTY_MESSAGE_REPLY = "Your message is empty: type a question or a sentence to chat."
# A tool call as the engine's text shows it; parsed back into parts when a client sends it as history.
_TOOL_CALL = re.compile(
    r"<\|python_start\|>(.*?)<\|python_end\|>(?:<\|output_start\|>(.*?)<\|output_end\|>)?", re.DOTALL
)


@dataclass
class ChatDefaults:
    """Sampling settings when a request or the window does not choose (from the config's chat group)."""

    temperature: float = 0.8
    top_k: int = 50
    max_new_tokens: int = 512


# ------------------------------------------------------------------------------ message handling


class RequestError(ValueError):
    """A malformed request: answered with `status` and this message."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param = param
        self.status = status


def _text_of(content: Any, where: str) -> str:
    """Text of an OpenAI / Gradio message content: a string or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                raise RequestError(f"{where}: only text content parts are supported", "messages")
        return "".join(texts)
    raise RequestError(f"{where}: content must be a string or a list of text parts", "messages")


def assistant_content(text: str) -> str | list[dict]:
    """An assistant message's text back into conversation parts (tool calls and their outputs)."""
    if "<|python_start|>" not in text:
        return text
    parts: list[dict] = []
    pos = 0
    for match in _TOOL_CALL.finditer(text):
        if match.start() > pos:
            parts.append({"type": "text", "text": text[pos : match.start()]})
        parts.append({"type": "python", "text": match.group(1)})
        if match.group(2) is not None:
            parts.append({"type": "python_output", "text": match.group(2)})
        pos = match.end()
    if pos < len(text):
        parts.append({"type": "text", "text": text[pos:]})
    return parts


def to_conversation(messages: Any) -> Conversation:
    """OpenAI-style or Gradio-style messages -> a conversation the engine can answer.

    System (or developer) messages are joined into one leading system message; consecutive
    messages of one role are joined; assistant messages before the first user message are dropped
    (a greeting); the last message must come from the user."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list", "messages")
    system: list[str] = []
    turns: list[dict] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise RequestError(f"messages[{i}] must be an object with 'role' and 'content'", "messages")
        role = msg.get("role")
        if role not in ("system", "developer", "user", "assistant"):
            raise RequestError(f"messages[{i}]: role {role!r} is not supported (system, user, assistant)",
                               "messages")  # fmt: skip
        if "content" not in msg:
            raise RequestError(f"messages[{i}] has no 'content'", "messages")
        text = _text_of(msg["content"], f"messages[{i}]")
        if role in ("system", "developer"):
            system.append(text)
        elif turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + text
        elif role == "user" or turns:
            turns.append({"role": role, "content": text})
    if not turns or turns[-1]["role"] != "user":
        raise RequestError("the last message must come from the user", "messages")
    for turn in turns:
        if turn["role"] == "assistant":
            turn["content"] = assistant_content(turn["content"])
    head = [{"role": "system", "content": "\n\n".join(system)}] if system else []
    return {"messages": head + turns}


# ----------------------------------------------------------------------------- OpenAI-compatible


@dataclass
class CompletionRequest:
    model: str
    conversation: Conversation
    max_tokens: int
    temperature: float
    top_p: float | None
    top_k: int | None
    n: int
    stream: bool
    seed: int | None
    include_usage: bool


def _number(body: dict, key: str, default: Any, kind: type, low: float, high: float) -> Any:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
        raise RequestError(f"'{key}' must be {'an integer' if kind is int else 'a number'}", key)
    if not low <= value <= high:
        raise RequestError(f"'{key}' must be between {low} and {high}, got {value}", key)
    return kind(value)


def parse_request(body: Any, pool: EnginePool, default_model: str, defaults: ChatDefaults) -> CompletionRequest:
    """Validate an OpenAI chat-completions payload; RequestError names the bad field."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    if "messages" not in body:
        raise RequestError("'messages' is required", "messages")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError("'model' must be a string", "model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("'stream' must be true or false", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError("'stream_options' must be an object", "stream_options")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    top_k = _number(body, "top_k", defaults.top_k, int, 0, 10**6)
    temperature = _number(body, "temperature", defaults.temperature, float, 0.0, 2.0)
    top_p = _number(body, "top_p", None, float, 0.0, 1.0)
    if top_p == 0:  # only the most likely token is left: greedy
        top_p, temperature = None, 0.0
    return CompletionRequest(
        model=model if model in pool.labels else default_model,
        conversation=to_conversation(body["messages"]),
        max_tokens=_number({"max_tokens": max_tokens}, "max_tokens", defaults.max_new_tokens, int, 1, 10**6),
        temperature=temperature,
        top_p=top_p,
        top_k=top_k or None,
        n=_number(body, "n", 1, int, 1, MAX_CHOICES),
        stream=stream,
        seed=_number(body, "seed", None, int, -(2**63), 2**63 - 1),
        include_usage=bool(options.get("include_usage", False)),
    )


def _error_response(err: RequestError) -> JSONResponse:
    body = {"error": {"message": str(err), "type": "invalid_request_error", "param": err.param, "code": None}}
    return JSONResponse(body, status_code=err.status)


class Completion:
    """One request's generation, shared by the streaming and the plain answer."""

    def __init__(self, pool: EnginePool, req: CompletionRequest) -> None:
        self.req = req
        self.engine = pool.get(req.model)
        try:
            self.prompt = self.engine.chat_prompt(req.conversation, req.max_tokens)
        except ValueError as err:
            raise RequestError(str(err), "messages") from None
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.completion_tokens = 0

    def events(self):
        sampling = {"temperature": self.req.temperature, "top_k": self.req.top_k, "top_p": self.req.top_p,
                    "seed": self.req.seed}  # fmt: skip
        for event in self.engine.stream_text(self.prompt.ids, self.req.n, self.prompt.max_tokens, **sampling):
            self.completion_tokens += event.token is not None
            yield event

    def usage(self) -> dict:
        prompt = len(self.prompt.ids)
        return {"prompt_tokens": prompt, "completion_tokens": self.completion_tokens,
                "total_tokens": prompt + self.completion_tokens}  # fmt: skip

    def header(self, kind: str) -> dict:
        out = {"id": self.id, "object": kind, "created": self.created, "model": self.req.model}
        if self.prompt.notice:
            out["llmstack_notice"] = self.prompt.notice
        return out

    def answer(self) -> dict:
        texts = [""] * self.req.n
        reasons: list[str | None] = [None] * self.req.n
        for event in self.events():
            texts[event.index] += event.text
            reasons[event.index] = event.finish_reason or reasons[event.index]
        choices = [{"index": i, "message": {"role": "assistant", "content": texts[i]}, "finish_reason": reasons[i],
                    "logprobs": None} for i in range(self.req.n)]  # fmt: skip
        return {**self.header("chat.completion"), "choices": choices, "usage": self.usage()}

    def sse(self) -> Iterator[str]:
        def chunk(choices: list[dict], **extra) -> str:
            return f"data: {json.dumps({**self.header('chat.completion.chunk'), 'choices': choices, **extra})}\n\n"

        for i in range(self.req.n):
            yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for event in self.events():
            if event.text:
                yield chunk([{"index": event.index, "delta": {"content": event.text}, "finish_reason": None}])
            if event.finish_reason:
                yield chunk([{"index": event.index, "delta": {}, "finish_reason": event.finish_reason}])
        if self.req.include_usage:
            yield chunk([], usage=self.usage())
        yield "data: [DONE]\n\n"


def openai_router(pool: EnginePool, default_model: str, defaults: ChatDefaults) -> APIRouter:
    """Routes of the OpenAI-compatible API, to be served beside the Gradio app."""
    router = APIRouter()

    @router.get("/v1/models")
    def list_models() -> dict:
        return {"object": "list", "data": [{"id": label, "object": "model", "created": 0, "owned_by": "llmstack"}
                                           for label in pool.labels]}  # fmt: skip

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as err:
            return _error_response(RequestError(f"the request body is not valid JSON: {err}"))
        try:
            req = parse_request(body, pool, default_model, defaults)
            completion = await run_in_threadpool(Completion, pool, req)  # may load a model
        except RequestError as err:
            return _error_response(err)
        if req.stream:
            return StreamingResponse(completion.sse(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})  # fmt: skip
        return JSONResponse(await run_in_threadpool(completion.answer))

    return router


# ----------------------------------------------------------------------------------- the window


def build_ui(pool: EnginePool, default_model: str, defaults: ChatDefaults, concurrency: int = 4) -> gr.Blocks:
    """The Gradio chat window: streaming replies, history, stop button, stage and sampling controls."""
    max_context = max(pool.get(default_model).seq_len, defaults.max_new_tokens)

    def respond(message: Any, history: list, stage: str, temperature: float, top_k: float, max_tokens: float):
        text = _text_of(message.get("text", "") if isinstance(message, dict) else message, "message")
        if not text.strip():
            yield EMPTY_MESSAGE_REPLY
            return
        try:
            past = [{"role": m["role"], "content": m["content"]} for m in history if m.get("content") is not None]
            conversation = to_conversation([*past, {"role": "user", "content": text}])
            reply = pool.get(stage).chat(conversation, max_tokens=int(max_tokens), temperature=float(temperature),
                                         top_k=int(top_k) or None)  # fmt: skip
        except ValueError as err:
            raise gr.Error(str(err)) from None
        if reply.notice:
            gr.Warning(reply.notice)
        shown = ""
        for delta in reply:
            shown += delta
            yield shown
        if not shown:
            yield "(the model ended its reply without writing anything)"

    return gr.ChatInterface(
        respond,
        title="llmstack chat",
        description=f"Models: {', '.join(pool.labels)}. Replies stream as they are sampled; Stop ends one.",
        additional_inputs=[
            gr.Dropdown(pool.labels, value=default_model, label="model stage"),
            gr.Slider(0.0, 2.0, value=defaults.temperature, step=0.05, label="temperature (0 = greedy)"),
            gr.Slider(0, 200, value=defaults.top_k, step=1, label="top-k (0 = off)"),
            gr.Slider(1, max_context, value=min(defaults.max_new_tokens, max_context), step=1, label="max tokens"),
        ],
        additional_inputs_accordion=gr.Accordion("Model and sampling", open=False),
        concurrency_limit=concurrency,
        analytics_enabled=False,
        api_name="chat",
    )


def launch(
    pool: EnginePool,
    default_model: str,
    defaults: ChatDefaults,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    share: bool = False,
    concurrency: int = 4,
    block: bool = True,
) -> gr.Blocks:
    """Serve the window and the API on host:port; with block=False return the running app
    (`app.local_url`, stop it with `app.close()`)."""
    demo = build_ui(pool, default_model, defaults, concurrency)
    demo.queue(default_concurrency_limit=concurrency)
    routes = openai_router(pool, default_model, defaults).routes
    # The API routes go first in the app gradio builds, so its own routes cannot shadow them.
    demo.launch(server_name=host, server_port=port, share=share, ssr_mode=False, prevent_thread_lock=True,
                app_kwargs={"routes": routes}, quiet=True)  # fmt: skip
    print(f"llmstack chat on {demo.local_url} (models: {', '.join(pool.labels)}; default {default_model}); "
          f"OpenAI API at {demo.local_url.rstrip('/')}/v1/chat/completions", flush=True)  # fmt: skip
    if demo.share_url:
        print(f"public link: {demo.share_url}", flush=True)
    if block:
        try:
            demo.block_thread()
        finally:
            demo.close()
    return demo
