"""The OpenAI-compatible API: `POST /v1/chat/completions` and `GET /v1/models`, with server limits.

Limits (ChatConfig, answered with OpenAI-shaped errors; no client input gets a 500):
  * a body over `max_body_bytes` gets 413 (read in chunks and counted, never buffered past the limit);
  * JSON nested deeper than `max_depth`, or more than `max_messages` messages, gets 400;
  * a prompt over `prompt_chars_per_token` x the model's context (characters) is cut from the left
    *before* it is tokenized, and the cut is reported in `llmstack_notice`.

Tool calls: the engine runs the python tool itself, mid-reply, so the calls are not OpenAI
`tool_calls` (those ask the client to run a function and come back). The assistant text carries
each call as a line of its own, `python: 45-12 → 33` (see render.py), with no special-token
markup; such lines sent back as history are read as the tool calls they were.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from llmstack.chat.messages import RequestError, to_conversation, trim_conversation
from llmstack.chat.render import StreamedText, api_text
from llmstack.chat.resolve import EnginePool
from llmstack.conversation import Conversation

MAX_CHOICES = 8  # n per request: each is a sample in one batch
_DRAIN_BYTES = 64 * 2**20  # an oversized body is read (and discarded) this far, so the client sees the 413


@dataclass
class ServerLimits:
    """What one API request may hold (from the config's chat group; defaults match ChatConfig)."""

    max_body_bytes: int = 2**20
    max_messages: int = 256
    max_depth: int = 32
    prompt_chars_per_token: int = 16


@dataclass
class ChatDefaults:
    """Sampling settings when a request or the window does not choose, and the server's limits."""

    temperature: float = 0.8
    top_k: int = 50
    max_new_tokens: int = 512
    limits: ServerLimits = field(default_factory=ServerLimits)

    @classmethod
    def from_config(cls, chat: Any) -> ChatDefaults:
        """From the config's `chat` group (a ChatConfig or its DictConfig)."""
        limits = ServerLimits(chat.max_body_bytes, chat.max_messages, chat.max_depth, chat.prompt_chars_per_token)
        return cls(chat.temperature, chat.top_k, chat.max_new_tokens, limits)


# ------------------------------------------------------------------------------------ the body


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or RequestError 413 once it passes `limit` bytes."""
    body = bytearray()
    too_big = False
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if not too_big:
            body += chunk
            too_big = len(body) > limit
        if too_big and seen > _DRAIN_BYTES:
            break
    if too_big:
        raise RequestError(f"the request body is over this server's limit of {limit} bytes", status=413)
    return bytes(body)


def parse_json(body: bytes, max_depth: int) -> Any:
    """JSON from bytes, refusing nesting deeper than `max_depth` (containers inside containers)."""
    try:
        value = json.loads(body)
    except RecursionError:  # the C parser refuses nesting near Python's recursion limit
        raise RequestError(f"the request JSON is nested deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise RequestError(f"the request body is not valid JSON: {err}") from None
    stack = [(value, 1)]
    while stack:  # iterative: a deep value must not be able to overflow the checker either
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > max_depth:
                    raise RequestError(f"the request JSON is nested deeper than {max_depth} levels")
                stack.append((child, depth + 1))
    return value


# ------------------------------------------------------------------------------------ requests


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
    finite = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))  # no NaN, no inf
    if isinstance(value, bool) or not finite or (kind is int and value != int(value)):
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
    if isinstance(body["messages"], list) and len(body["messages"]) > defaults.limits.max_messages:
        raise RequestError(f"at most {defaults.limits.max_messages} messages per request", "messages")
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

    def __init__(self, pool: EnginePool, req: CompletionRequest, limits: ServerLimits) -> None:
        self.req = req
        self.engine = pool.get(req.model)
        conversation, cut = trim_conversation(req.conversation, self.engine.seq_len * limits.prompt_chars_per_token)
        try:
            self.prompt = self.engine.chat_prompt(conversation, req.max_tokens)
        except ValueError as err:
            raise RequestError(str(err), "messages") from None
        self.notice = "; ".join(n for n in (cut, self.prompt.notice) if n) or None
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
        if self.notice:
            out["llmstack_notice"] = self.notice
        return out

    def answer(self) -> dict:
        raws = [""] * self.req.n
        reasons: list[str | None] = [None] * self.req.n
        for event in self.events():
            raws[event.index] += event.text
            reasons[event.index] = event.finish_reason or reasons[event.index]
        choices = [{"index": i, "message": {"role": "assistant", "content": api_text(raws[i])},
                    "finish_reason": reasons[i], "logprobs": None} for i in range(self.req.n)]  # fmt: skip
        return {**self.header("chat.completion"), "choices": choices, "usage": self.usage()}

    def sse(self) -> Iterator[str]:
        def chunk(choices: list[dict], **extra) -> str:
            return f"data: {json.dumps({**self.header('chat.completion.chunk'), 'choices': choices, **extra})}\n\n"

        texts = [StreamedText() for _ in range(self.req.n)]  # tool-call markup -> readable lines
        for i in range(self.req.n):
            yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for event in self.events():
            text = texts[event.index].push(event.text)
            if text:
                yield chunk([{"index": event.index, "delta": {"content": text}, "finish_reason": None}])
            if event.finish_reason:
                yield chunk([{"index": event.index, "delta": {}, "finish_reason": event.finish_reason}])
        if self.req.include_usage:
            yield chunk([], usage=self.usage())
        yield "data: [DONE]\n\n"


def openai_router(pool: EnginePool, default_model: str, defaults: ChatDefaults) -> APIRouter:
    """Routes of the OpenAI-compatible API, to be served beside the Gradio app."""
    router = APIRouter()
    limits = defaults.limits

    @router.get("/v1/models")
    def list_models() -> dict:
        return {"object": "list", "data": [{"id": label, "object": "model", "created": 0, "owned_by": "llmstack"}
                                           for label in pool.labels]}  # fmt: skip

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            body = parse_json(await read_body(request, limits.max_body_bytes), limits.max_depth)
            req = parse_request(body, pool, default_model, defaults)
            completion = await run_in_threadpool(Completion, pool, req, limits)  # may load a model
        except RequestError as err:
            return _error_response(err)
        if req.stream:
            return StreamingResponse(completion.sse(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})  # fmt: skip
        return JSONResponse(await run_in_threadpool(completion.answer))

    return router
