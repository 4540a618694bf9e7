"""How a reply is shown: the engine's text (with special-token markup) for the API and the window.

The engine writes a tool call as `<|python_start|>45-12<|python_end|><|output_start|>33<|output_end|>`.
Clients never see that markup:

* API (`api_text`): the call becomes a line of its own, `python: 45-12 → 33`, set off by one
  newline on each side; any other stray special token is dropped. `from_api_text` turns those
  lines back into markup when a client sends the reply back as history.
* Window (`window_markdown`): the text is Markdown-escaped, so `6*7 and 8*9`, `#### 6`, `<b>` or
  `a_b_c` show as typed, and each call is a fenced block (the one place Markdown is used).
  `from_window` inverts it exactly, since Gradio hands the shown text back as the history.

Both renderings are prefix-stable while a call is still streaming: a longer raw text renders to a
longer string that starts with the shorter one's rendering (what streaming deltas rely on).
"""

from __future__ import annotations

import re
import string
from typing import NamedTuple

from llmstack.tokenizer import SPECIAL_TOKENS

_SPECIAL = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS))
ARROW = " → "
# Every ASCII punctuation mark gets a backslash: CommonMark lets any of them be escaped, and
# escaping all of them (the backslash too) makes the escaping exactly invertible.
_PUNCT = frozenset(string.punctuation)
_UNESCAPE = re.compile(r"\\([" + re.escape(string.punctuation) + r"])|&nbsp;")
_API_CALL = re.compile(r"\npython: ([^\n]*?) → ([^\n]*)\n")  # one line, as api_text writes it
_WINDOW_CALL = re.compile(r"\n\n(`{3,})\npython: (.*?)(?: → (.*?))?\n\1\n\n", re.DOTALL)


class Segment(NamedTuple):
    """Plain text (expr None) or one tool call: its expression, its output, and how far it got:
    "open" (expression streaming), "called" (expression done), "output" (output streaming), "done"."""

    text: str
    expr: str | None = None
    output: str = ""
    state: str = "done"


def segments(raw: str) -> list[Segment]:
    """Split engine text into plain text and tool calls; other special tokens are dropped."""
    out: list[Segment] = []
    call: Segment | None = None
    pos = 0
    for match in [*_SPECIAL.finditer(raw), None]:
        chunk = raw[pos : match.start() if match else len(raw)]
        if call is not None and call.state == "open":
            call = call._replace(expr=call.expr + chunk)
        elif call is not None and call.state == "output":
            call = call._replace(output=call.output + chunk)
        elif chunk:
            if call is not None:  # text after a call that got no output: that call is over
                out.append(call._replace(state="done"))
                call = None
            out.append(Segment(chunk))
        if match is None:
            break
        pos, token = match.end(), match.group()
        if token == "<|python_start|>":
            if call is not None:
                out.append(call._replace(state="done"))
            call = Segment("", "", "", "open")
        elif call is None:
            continue  # a stray special token: dropped
        elif (call.state, token) in (("open", "<|python_end|>"), ("called", "<|output_start|>")):
            call = call._replace(state="called" if call.state == "open" else "output")
        elif (call.state, token) == ("output", "<|output_end|>"):
            out.append(call._replace(state="done"))
            call = None
    if call is not None:
        out.append(call)
    return out


def _call_line(seg: Segment) -> str:
    """`python: expr → output`; while the call streams, only what is known so far."""
    return f"python: {seg.expr}" if seg.state == "open" else f"python: {seg.expr}{ARROW}{seg.output}"


def api_text(raw: str) -> str:
    """The reply as an API client gets it: each tool call a `python: expr → output` line."""
    parts = []
    for seg in segments(raw):
        if seg.expr is None:
            parts.append(seg.text)
        else:
            parts.append("\n" + _call_line(seg) + ("\n" if seg.state == "done" else ""))
    return "".join(parts)


def from_api_text(text: str) -> str:
    """`python: expr → output` lines (as api_text writes them) back into tool-call markup."""

    def markup(m: re.Match) -> str:
        return f"<|python_start|>{m.group(1)}<|python_end|><|output_start|>{m.group(2)}<|output_end|>"

    return _API_CALL.sub(markup, text)


def escape_markdown(text: str) -> str:
    """Text that Markdown shows exactly as typed: punctuation escaped, leading and repeated spaces
    kept as &nbsp; (HTML would collapse them and Markdown would read indentation as code)."""
    out = "".join("\\" + c if c in _PUNCT else c for c in text)
    return re.sub(r"(?m)(?<= ) |^ ", "&nbsp;", out)


def unescape_markdown(text: str) -> str:
    return _UNESCAPE.sub(lambda m: " " if m.group(1) is None else m.group(1), text)


def window_markdown(raw: str) -> str:
    """The reply as the chat window shows it: escaped text, each tool call a fenced block."""
    parts = []
    for seg in segments(raw):
        if seg.expr is None:
            parts.append(escape_markdown(seg.text))
        else:
            line = _call_line(seg)
            longest = max((len(r) for r in re.findall("`+", line)), default=0)
            fence = "`" * max(3, longest + 1)  # a fence no backtick run inside can close
            parts.append(f"\n\n{fence}\n{line}\n{fence}\n\n")
    return "".join(parts)


def from_window(shown: str) -> str:
    """What the window shows (window_markdown, or a user message escaped) back into engine text."""
    pieces, pos = [], 0
    for m in _WINDOW_CALL.finditer(shown):
        pieces.append(unescape_markdown(shown[pos : m.start()]))
        out = "" if m.group(3) is None else f"<|output_start|>{m.group(3)}<|output_end|>"
        pieces.append(f"<|python_start|>{m.group(2)}<|python_end|>{out}")
        pos = m.end()
    pieces.append(unescape_markdown(shown[pos:]))
    return "".join(pieces)


class StreamedText:
    """Turns the engine's raw text deltas into api_text deltas (renders the whole text so far and
    sends what is new; api_text is prefix-stable, so nothing sent ever needs taking back)."""

    def __init__(self) -> None:
        self.raw = ""
        self.sent = ""

    def push(self, delta: str) -> str:
        self.raw += delta
        now = api_text(self.raw)
        if not now.startswith(self.sent):  # cannot happen for engine output; never resend
            return ""
        new, self.sent = now[len(self.sent) :], now
        return new
