"""Messages from clients (OpenAI-style or the Gradio window) into a conversation the engine can answer,
and the character cut that bounds a prompt before it is tokenized."""

from __future__ import annotations

import re
from typing import Any

from llmstack.chat.render import from_api_text
from llmstack.conversation import Conversation

# A tool call as the engine's text shows it; parsed back into parts when a client sends it as history.
_TOOL_CALL = re.compile(
    r"<\|python_start\|>(.*?)<\|python_end\|>(?:<\|output_start\|>(.*?)<\|output_end\|>)?", re.DOTALL
)


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
    text = from_api_text(text)  # the `python: expr → output` lines the API sends
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
    if not turns[-1]["content"].strip():
        raise RequestError("the last user message is empty: there is nothing to answer", "messages")
    for turn in turns:
        if turn["role"] == "assistant":
            turn["content"] = assistant_content(turn["content"])
    head = [{"role": "system", "content": "\n\n".join(system)}] if system else []
    return {"messages": head + turns}


def _length(content: str | list[dict]) -> int:
    return len(content) if isinstance(content, str) else sum(len(p["text"]) for p in content)


def trim_conversation(conversation: Conversation, max_chars: int) -> tuple[Conversation, str | None]:
    """Keep the newest `max_chars` characters of a conversation, so a huge prompt is cut *before*
    tokenizing (tokenizing megabytes costs seconds; the engine then cuts tokens to the context).

    Messages are kept newest first; the one that crosses the budget keeps the end of its text if it
    is plain text, else it is dropped, and so are all older ones, and an assistant message left
    first. The last (user) message always keeps at least its tail. Returns the conversation and a
    notice (None when nothing was cut)."""
    messages = conversation["messages"]
    total = sum(_length(m["content"]) for m in messages)
    if total <= max_chars:
        return conversation, None
    kept: list[dict] = []
    budget = max_chars
    for msg in reversed(messages):
        size = _length(msg["content"])
        if size <= budget:
            kept.append(msg)
            budget -= size
            continue
        if isinstance(msg["content"], str) and budget > 0:
            kept.append({**msg, "content": msg["content"][len(msg["content"]) - budget :]})
        break
    kept.reverse()
    while kept[0]["role"] == "assistant":  # a conversation starts with the system or the user
        kept.pop(0)
    notice = (f"the prompt was {total} characters, over this server's limit of {max_chars}; "
              f"its oldest {total - sum(_length(m['content']) for m in kept)} characters were dropped")  # fmt: skip
    return {"messages": kept}, notice
