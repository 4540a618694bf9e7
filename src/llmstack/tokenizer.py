"""Sentencepiece BPE tokenizer with chat special tokens, and chat rendering with a loss mask.

    from llmstack.tokenizer import Tokenizer, train_tokenizer
    train_tokenizer(texts, Path("tokenizer.model"), vocab_size=4096, max_chars=20_000_000)
    tok = Tokenizer.load("tokenizer.model")
    ids, mask = tok.render_conversation({"messages": [...]})   # see conversation.py

The chat specials are sentencepiece *control* symbols: they own single ids, but no input text can
ever produce them (a user who types "<|assistant_start|>" gets ordinary tokens), so a conversation's
structure can only come from `render_conversation`. Byte fallback makes every unicode string
round-trip, and identity normalisation without a dummy prefix keeps `decode(encode(s)) == s`.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import sentencepiece as spm

from llmstack.conversation import Conversation, assistant_parts, validate

SPECIAL_TOKENS = [
    "<|bos|>",  # starts every document and every conversation
    "<|user_start|>",
    "<|user_end|>",
    "<|assistant_start|>",
    "<|assistant_end|>",
    "<|python_start|>",  # the assistant calls the python tool
    "<|python_end|>",
    "<|output_start|>",  # the engine feeds the tool's output back
    "<|output_end|>",
]

# sentencepiece drops training sentences longer than max_sentence_length bytes, so long documents
# are cut into pieces below this size (at line ends where possible).
_MAX_SENTENCE_BYTES = 8192


def _training_chunks(texts: Iterable[str], max_chars: int) -> Iterator[str]:
    """Up to `max_chars` characters of `texts`, as chunks of at most _MAX_SENTENCE_BYTES bytes.

    Lines keep their newline so the vocabulary learns "\\n" pieces instead of falling back to bytes.
    """
    budget = max_chars
    for text in texts:
        if budget <= 0:
            return
        text = text[:budget]
        budget -= len(text)
        buf: list[str] = []
        size = 0
        for line in text.splitlines(keepends=True):
            n = len(line.encode("utf-8"))
            if size + n > _MAX_SENTENCE_BYTES and buf:
                yield "".join(buf)
                buf, size = [], 0
            if n > _MAX_SENTENCE_BYTES:
                # One very long line: cut by characters; a UTF-8 character is at most 4 bytes.
                step = _MAX_SENTENCE_BYTES // 4
                for i in range(0, len(line), step):
                    yield line[i : i + step]
                continue
            buf.append(line)
            size += n
        if buf:
            yield "".join(buf)


def train_tokenizer(
    texts: Iterable[str],
    out_path: Path,
    vocab_size: int,
    max_chars: int,
    *,
    threads: int = 2,
    seed: int = 0,
    character_coverage: float = 0.9999,
) -> Path:
    """Train a BPE tokenizer on up to `max_chars` characters of `texts`; write it atomically to `out_path`.

    `character_coverage` < 1 leaves the rarest characters to byte fallback instead of spending
    vocabulary on them. Returns `out_path`.
    """
    n_required = 256 + len(SPECIAL_TOKENS) + 1  # byte pieces, specials, <unk>
    if vocab_size <= n_required:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: byte fallback and specials need {n_required}"
        )
    if max_chars <= 0:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    spm.set_random_generator_seed(seed)
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=_training_chunks(texts, max_chars),
        model_writer=proto,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        character_coverage=character_coverage,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        allow_whitespace_only_pieces=True,
        split_digits=True,
        max_sentence_length=_MAX_SENTENCE_BYTES,
        control_symbols=SPECIAL_TOKENS,
        unk_id=0,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        num_threads=threads,
        minloglevel=2,  # errors only: the trainer's progress log is thousands of lines
    )
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(proto.getvalue())
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path


class Tokenizer:
    """A trained sentencepiece model plus the chat specials; picklable (the model travels as bytes)."""

    def __init__(self, model_proto: bytes):
        self._proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self._special_ids = {name: self.sp.piece_to_id(name) for name in SPECIAL_TOKENS}
        missing = [n for n, i in self._special_ids.items() if not self.sp.is_control(i)]
        if missing:
            raise ValueError(f"not an llmstack tokenizer: special tokens {missing} are not control symbols")
        self.bos_id = self._special_ids["<|bos|>"]

    @classmethod
    def load(cls, path: Path | str) -> Tokenizer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer model not found: {path}")
        return cls(path.read_bytes())

    def __getstate__(self) -> dict:
        return {"model_proto": self._proto}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["model_proto"])

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def special_id(self, name: str) -> int:
        try:
            return self._special_ids[name]
        except KeyError:
            raise KeyError(f"unknown special token {name!r}; known: {', '.join(SPECIAL_TOKENS)}") from None

    def is_special(self, token_id: int) -> bool:
        return self.sp.is_control(token_id)

    def id_to_piece(self, token_id: int) -> str:
        return self.sp.id_to_piece(token_id)

    def encode(self, text: str) -> list[int]:
        """Ordinary tokens only: special-token strings in `text` are encoded as plain text."""
        return self.sp.encode(text, out_type=int)

    def encode_batch(self, texts: list[str], num_threads: int = 2) -> list[list[int]]:
        """Same as [encode(t) for t in texts], about twice as fast (sentencepiece's threaded batch)."""
        return self.sp.encode(list(texts), out_type=int, num_threads=num_threads)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; special ids appear as their strings (sentencepiece's decode would drop them)."""
        out: list[str] = []
        run: list[int] = []
        for i in ids:
            i = int(i)
            if self.sp.is_control(i):
                if run:
                    out.append(self.sp.decode(run))
                    run = []
                out.append(self.sp.id_to_piece(i))
            else:
                run.append(i)
        if run:
            out.append(self.sp.decode(run))
        return "".join(out)

    def bytes_per_token(self, texts: Iterable[str]) -> float:
        """UTF-8 bytes per token over `texts` (the compression figure; higher is better)."""
        texts = list(texts)
        n_bytes = sum(len(t.encode("utf-8")) for t in texts)
        n_tokens = sum(len(ids) for ids in self.encode_batch(texts))
        return n_bytes / max(n_tokens, 1)

    def render_conversation(
        self, conversation: Conversation, max_tokens: int | None = None
    ) -> tuple[list[int], list[int]]:
        """Token ids of a whole conversation and a mask that is 1 exactly on what the assistant writes.

        A system message is merged into the first user message (the model has no system role).
        Tool outputs are masked out: the engine supplies them at inference, the model never learns them.
        """
        validate(conversation)
        messages = list(conversation["messages"])
        if messages[0]["role"] == "system":
            if len(messages) < 2:
                raise ValueError("a system message must be followed by a user message")
            system, first = messages[0], messages[1]
            merged = {"role": "user", "content": system["content"] + "\n\n" + first["content"]}
            messages = [merged, *messages[2:]]

        ids: list[int] = []
        mask: list[int] = []

        def add(tokens: list[int], learn: int) -> None:
            ids.extend(tokens)
            mask.extend([learn] * len(tokens))

        sid = self._special_ids
        add([self.bos_id], 0)
        for msg in messages:
            if msg["role"] == "user":
                add([sid["<|user_start|>"], *self.encode(msg["content"]), sid["<|user_end|>"]], 0)
                continue
            add([sid["<|assistant_start|>"]], 0)
            for part in assistant_parts(msg):
                if part["type"] == "text":
                    add(self.encode(part["text"]), 1)
                elif part["type"] == "python":
                    add([sid["<|python_start|>"], *self.encode(part["text"]), sid["<|python_end|>"]], 1)
                else:  # python_output
                    add([sid["<|output_start|>"], *self.encode(part["text"]), sid["<|output_end|>"]], 0)
            add([sid["<|assistant_end|>"]], 1)
        if max_tokens is not None:
            ids, mask = ids[:max_tokens], mask[:max_tokens]
        return ids, mask

    def render_for_completion(self, conversation: Conversation) -> list[int]:
        """The prompt the engine completes: the conversation without its final assistant reply,
        followed by <|assistant_start|>."""
        messages = list(conversation["messages"])
        if messages and messages[-1].get("role") == "assistant":
            messages = messages[:-1]
        ids, _ = self.render_conversation({**conversation, "messages": messages})
        return [*ids, self._special_ids["<|assistant_start|>"]]


def tokenizer_stats(tokenizer: Tokenizer, val_texts: Iterable[str]) -> dict:
    """What the tokenizer stage records in tokenizer.json: size and compression on validation text."""
    texts = list(val_texts)
    n_tokens = sum(len(ids) for ids in tokenizer.encode_batch(texts))
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    return {
        "vocab_size": tokenizer.vocab_size,
        "bytes_per_token": n_bytes / max(n_tokens, 1),
        "chars": sum(len(t) for t in texts),
        "bytes": n_bytes,
        "tokens": n_tokens,
    }
