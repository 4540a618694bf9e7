"""The conversation format shared by the tokenizer, the chat tasks, the engine and the chat UI.

A conversation is a plain dict, so it round-trips through JSON unchanged:

    {"messages": [
        {"role": "system", "content": "You are ..."},          # optional, first only
        {"role": "user", "content": "What is 12*7?"},
        {"role": "assistant", "content": [                      # str, or a list of parts
            {"type": "text", "text": "Let me compute. "},
            {"type": "python", "text": "12*7"},                 # a tool call the model writes
            {"type": "python_output", "text": "84"},            # fed back by the engine, never learned
            {"type": "text", "text": "The answer is 84."},
        ]},
    ]}

Roles alternate user/assistant after the optional system message. Chat rendering (tokenizer.py)
turns a conversation into token ids plus a loss mask that is 1 on exactly what the assistant writes.
"""

from __future__ import annotations

from typing import Any

Conversation = dict[str, Any]
PART_TYPES = ("text", "python", "python_output")


def assistant_parts(message: dict) -> list[dict]:
    """An assistant message's content as a list of parts (a plain string is one text part)."""
    content = message["content"]
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content)


def validate(conversation: Conversation) -> None:
    """Raise ValueError with a one-line reason when `conversation` breaks the format above."""
    messages = conversation.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("conversation needs a non-empty 'messages' list")
    start = 1 if messages[0].get("role") == "system" else 0
    for i, msg in enumerate(messages[start:]):
        want = "user" if i % 2 == 0 else "assistant"
        if msg.get("role") != want:
            raise ValueError(f"message {start + i} should have role {want!r}, got {msg.get('role')!r}")
        if want == "user" and not isinstance(msg.get("content"), str):
            raise ValueError(f"user message {start + i} content must be a string")
        if want == "assistant":
            for part in assistant_parts(msg):
                if part.get("type") not in PART_TYPES or not isinstance(part.get("text"), str):
                    raise ValueError(f"assistant message {start + i} has a malformed part: {part!r}")


def text_of(message: dict) -> str:
    """The visible text of a message (tool calls and outputs included, for display and scoring)."""
    if isinstance(message["content"], str):
        return message["content"]
    return "".join(p["text"] for p in message["content"])
