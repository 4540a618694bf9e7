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
context is reported in an extra top-level field, `llmstack_notice`. Limits: api.py.

What the model writes is shown as written (render.py). The window escapes all Markdown, so
`6*7 and 8*9`, code and a `#### 6` answer mark stay intact, and shows each python tool call as
a fenced block, `python: 45-12 → 33`. The API returns the assistant text without special-token
markup, each tool call as a line of its own, `python: 45-12 → 33` (the engine already ran it, so
it is not an OpenAI `tool_calls` request); such lines sent back as history count as the calls.

    api.py       /v1/chat/completions and /v1/models, request parsing, server limits
    messages.py  client messages -> a conversation; cutting a prompt before tokenizing
    render.py    engine text -> API text and window Markdown, and back
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from llmstack.chat.api import ChatDefaults, ServerLimits, openai_router
from llmstack.chat.messages import RequestError, _text_of, assistant_content, to_conversation, trim_conversation
from llmstack.chat.render import escape_markdown, from_window, window_markdown
from llmstack.chat.resolve import EnginePool

__all__ = ["EMPTY_MESSAGE_REPLY", "ChatDefaults", "RequestError", "ServerLimits", "assistant_content", "build_ui",
           "launch", "to_conversation"]  # fmt: skip

EMPTY_MESSAGE_REPLY = "Your message is empty: type a question or a sentence to chat."
NO_TEXT_REPLY = "(the model ended its reply without writing anything)"


class _ChatInterface(gr.ChatInterface):
    """ChatInterface that shows the user's own message as typed: the Chatbot renders Markdown (for
    the tool-call blocks), so the user's text is escaped like the replies; from_window inverts both
    (Gradio 6.31's private hooks: every user message enters the history through the first, and
    retry / undo take it back out through the second)."""

    def _append_message_to_history(self, message, history, role="user"):
        if role == "user" and isinstance(message, str):
            message = escape_markdown(message)
        return super()._append_message_to_history(message, history, role)

    def _pop_last_user_message(self, history):
        history, message = super()._pop_last_user_message(history)  # for retry and undo: as typed
        return history, from_window(message) if isinstance(message, str) else message


# ----------------------------------------------------------------------------------- the window


def _start_reply(engine, history: list, text: str, limits: ServerLimits, **sampling):
    """The engine's reply to the window's history plus `text`, and a notice of what was cut."""
    past = [{"role": m["role"], "content": from_window(_text_of(m["content"], "history"))}
            for m in history if m.get("content") is not None]  # fmt: skip
    conversation = to_conversation([*past, {"role": "user", "content": text}])
    conversation, cut = trim_conversation(conversation, engine.seq_len * limits.prompt_chars_per_token)
    reply = engine.chat(conversation, **sampling)
    return reply, "; ".join(n for n in (cut, reply.notice) if n) or None


def build_ui(pool: EnginePool, default_model: str, defaults: ChatDefaults, concurrency: int = 4) -> gr.Blocks:
    """The Gradio chat window: streaming replies, history, stop button, stage and sampling controls."""
    max_context = max(pool.get(default_model).seq_len, defaults.max_new_tokens)

    def respond(message: Any, history: list, stage: str, temperature: float, top_k: float, max_tokens: float):
        text = _text_of(message.get("text", "") if isinstance(message, dict) else message, "message")
        if not text.strip():
            yield escape_markdown(EMPTY_MESSAGE_REPLY)
            return
        try:
            reply, notice = _start_reply(pool.get(stage), history, text, defaults.limits,
                                         max_tokens=int(max_tokens), temperature=float(temperature),
                                         top_k=int(top_k) or None)  # fmt: skip
        except ValueError as err:  # RequestError included
            raise gr.Error(str(err)) from None
        if notice:
            gr.Warning(notice)
        raw = ""
        for delta in reply:
            raw += delta
            yield window_markdown(raw)
        if not window_markdown(raw).strip():
            yield escape_markdown(NO_TEXT_REPLY)

    return _ChatInterface(
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
        chatbot=gr.Chatbot(latex_delimiters=[], scale=1, label="chat"),  # `$$` stays text: no LaTeX eats it
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
