"""Inference: KV-cache sampling, several completions of one prompt, streaming, and the python tool.

    engine = Engine(model, tokenizer)                   # device from the model, dtype per device.decode_dtype
    reply = engine.chat({"messages": [{"role": "user", "content": "What is 12*7?"}]}, temperature=0.8)
    reply.notice                                        # set when the prompt had to be cut
    for delta in reply:                                 # text as it is generated
        print(delta, end="", flush=True)
    tokens, masks = engine.generate_batch(prompt_ids, num_samples=8, max_tokens=64, seed=0)

How a completion is made: the prompt is run once through the model with batch 1 (the prefill),
its KV cache is copied `num_samples` times (`KVCache.expand`), and then every step feeds one token
per sample. Samples stop at <|assistant_end|> (or <|bos|> / <|user_start|>, which can never belong
to an assistant turn). When a sample writes <|python_start|> expr <|python_end|>, the engine
evaluates `expr` with the restricted calculator (calculator.py) and forces
<|output_start|> result <|output_end|> into that sample, through the cache, before it samples
again; forced tokens carry mask 0 so training on completions (RL) learns only what was sampled.

Speed: the engine never autocasts. It keeps the weights (transposed, see Decoder) and the KV
cache in one decode dtype (device.decode_dtype: fp32 on CPU, bf16 on CUDA) for the whole
generation, prefill included, and runs a lean copy of GPT.forward's math over them: ~1.5x the
tokens/s of GPT.forward at the depth-4 shape on 2 CPU cores (bench/inference.py).
`Engine(..., fast=False)` runs GPT.forward instead: the reference path the tests compare with.

A prompt longer than the context (model.config.seq_len minus room for the reply) is cut from the
left, keeping its leading <|bos|>, and the caller gets a notice saying so.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from llmstack.calculator import calculate
from llmstack.conversation import Conversation, validate
from llmstack.decode import Decoder
from llmstack.device import decode_dtype
from llmstack.model import GPT, KVCache
from llmstack.tokenizer import Tokenizer

STOP_TOKENS = ("<|assistant_end|>", "<|bos|>", "<|user_start|>")


def sample_next(
    logits: torch.Tensor,
    generator: torch.Generator | None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """Next token ids (B,) from logits (B, V): greedy at temperature 0, else softmax sampling from
    the top_k most likely tokens and/or the smallest set whose probability reaches top_p."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and 0 < top_k < logits.size(-1):
        # sample among the k best only: a softmax over k values, not a masked softmax over V
        logits, order = torch.topk(logits, top_k, dim=-1)  # sorted, best first
    else:
        order = None
        if top_p is not None and top_p < 1.0:
            logits, order = logits.sort(dim=-1, descending=True)
    if top_p is not None and top_p < 1.0:
        probs = logits.softmax(dim=-1)
        # drop a token when the tokens ranked above it already hold top_p of the mass (never the first)
        logits = logits.masked_fill(probs.cumsum(dim=-1) - probs >= top_p, float("-inf"))
    choice = torch.multinomial(logits.softmax(dim=-1), num_samples=1, generator=generator)
    return (choice if order is None else order.gather(-1, choice)).squeeze(-1)


def check_sampling(temperature: float, top_k: int | None, top_p: float | None, max_tokens: int) -> None:
    """Raise ValueError with a one-line reason for settings the sampler cannot use."""
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = off), got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")


class TextEvent(NamedTuple):
    """One token of one sample, as text: `text` may be "" (a character still incomplete);
    `finish_reason` is "stop" or "length" on a sample's last event, else None. The "length"
    event comes after the sample's last token and has token None."""

    index: int
    token: int | None
    text: str
    finish_reason: str | None


class FittedPrompt(NamedTuple):
    ids: list[int]  # the prompt, cut from the left if it had to be
    max_tokens: int  # reply budget that still fits the context
    notice: str | None  # what was cut, for the user; None when nothing was


@dataclass
class _Sample:
    """Generation state of one sample: tool output still to force in, an open tool call, stopped?"""

    forced: deque[int] = field(default_factory=deque)  # tool output waiting to be fed in
    tool_call: list[int] | None = None  # tokens since <|python_start|>, while a call is open
    done: bool = False


class TextDecoder:
    """Turns one sample's token ids into text deltas as they arrive.

    A character split over byte-fallback tokens decodes to U+FFFD until its last byte arrives, so
    trailing replacement characters are held back. Special ids show as their strings (tool calls)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.pending: list[int] = []

    def push(self, token_id: int) -> str:
        self.pending.append(token_id)
        text = self.tokenizer.decode(self.pending)
        if text.endswith("\ufffd") and len(self.pending) < 8:  # at most 4 bytes per character
            return ""
        self.pending = []
        return text

    def flush(self) -> str:
        text = self.tokenizer.decode(self.pending)
        self.pending = []
        return text


class Engine:
    """Sampling from one GPT with one tokenizer; safe to share between threads (no per-call state).

    `precision` picks the decode dtype (device.decode_dtype); `fast=False` decodes through
    GPT.forward (the reference path). A model that is not a GPT (a test stand-in) runs as is."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, precision: str = "auto", fast: bool = True) -> None:
        if model.config.vocab_size < tokenizer.vocab_size:
            raise ValueError(
                f"model vocab {model.config.vocab_size} < tokenizer vocab {tokenizer.vocab_size}: "
                "they were not trained together"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.dtype = decode_dtype(self.device, precision)
        self.fast = fast
        self.decoder = Decoder(model, self.dtype) if isinstance(model, GPT) else None
        if self.decoder is None:
            self.dtype = next(model.parameters()).dtype
        sid = tokenizer.special_id
        self.stop_ids = frozenset(sid(name) for name in STOP_TOKENS)
        self.python_start, self.python_end = sid("<|python_start|>"), sid("<|python_end|>")
        self.output_start, self.output_end = sid("<|output_start|>"), sid("<|output_end|>")

    @property
    def seq_len(self) -> int:
        return self.model.config.seq_len

    # ---------------------------------------------------------------------------- prompt fitting

    def fit_prompt(self, prompt_ids: list[int], max_tokens: int) -> FittedPrompt:
        """Cut a prompt that leaves too little of the context for the reply, from the left.

        The reply keeps min(max_tokens, seq_len // 2) positions; the prompt keeps its leading
        <|bos|> (the model always saw one first) and its newest tokens."""
        if not prompt_ids:
            raise ValueError("empty prompt: it needs at least one token (render a conversation first)")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        ids, notice = list(prompt_ids), None
        budget = self.seq_len - min(max_tokens, self.seq_len // 2)
        if len(ids) > budget:
            head = ids[:1] if ids[0] == self.tokenizer.bos_id else []
            dropped = len(ids) - budget
            ids = head + ids[len(head) + dropped :]
            notice = (
                f"the prompt was {len(prompt_ids)} tokens and the context is {self.seq_len}; "
                f"its oldest {dropped} tokens were dropped"
            )
        return FittedPrompt(ids, min(max_tokens, self.seq_len - len(ids)), notice)

    # -------------------------------------------------------------------------------- generation

    def _forward(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Logits (B, V) of the last position of ids (B, T): the prefill, or a decode step (T = 1)."""
        if self.decoder is None:  # not a GPT: run it as it is
            with torch.no_grad():
                return self.model(ids, kv_cache=cache)[:, -1, :]
        return self.decoder.forward(ids, cache) if self.fast else self.decoder.reference(ids, cache)

    def _step_sample(self, sample: _Sample, token: int) -> None:
        """Advance the tool-call state machine of one sample by the token it just got."""
        if token == self.python_start:
            sample.tool_call = []
        elif token == self.python_end and sample.tool_call is not None:
            result = calculate(self.tokenizer.decode(sample.tool_call))
            sample.forced.extend([self.output_start, *self.tokenizer.encode(result), self.output_end])
            sample.tool_call = None
        elif sample.tool_call is not None:
            sample.tool_call.append(token)

    def generate(
        self,
        prompt_ids: list[int],
        num_samples: int = 1,
        max_tokens: int = 256,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
    ) -> Iterator[tuple[list[int | None], list[int]]]:
        """Yield, per step, (token of each sample, its mask): mask 1 = sampled, 0 = forced tool
        output; the token is None for a sample that already stopped. A sample's stop token is
        yielded (mask 1) as its last. Same seed, prompt, settings and device: same samples.

        The prompt is fitted to the context first (see fit_prompt; call it yourself for the notice)."""
        check_sampling(temperature, top_k, top_p, max_tokens)
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        ids, max_tokens, _ = self.fit_prompt(prompt_ids, max_tokens)
        vocab = self.tokenizer.vocab_size
        if any(not 0 <= i < vocab for i in ids):
            raise ValueError(f"prompt holds token ids outside the vocabulary [0, {vocab})")
        generator = torch.Generator(device=self.device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)

        if self.decoder is not None:
            self.decoder.refresh()  # RL changes the weights between generations
        cache = self.model.new_kv_cache(1, len(ids) + max_tokens, device=self.device, dtype=self.dtype)
        logits = self._forward(torch.tensor([ids], dtype=torch.long, device=self.device), cache)
        if num_samples > 1:
            cache = cache.expand(num_samples)
            logits = logits.expand(num_samples, -1)
        samples = [_Sample() for _ in range(num_samples)]
        filler = self.tokenizer.special_id("<|assistant_end|>")  # fed for stopped samples, ignored
        for step in range(max_tokens):
            # Every sample draws every step, forced or stopped or not, so each sample's random
            # stream does not depend on what the others did.
            drawn = sample_next(logits, generator, temperature, top_k, top_p).tolist()
            tokens: list[int | None] = []
            masks: list[int] = []
            for sample, token in zip(samples, drawn, strict=True):
                if sample.done:
                    tokens.append(None)
                    masks.append(0)
                    continue
                mask = 1
                if sample.forced:
                    token, mask = sample.forced.popleft(), 0
                elif token in self.stop_ids:
                    sample.done = True
                self._step_sample(sample, token)
                tokens.append(token)
                masks.append(mask)
            yield tokens, masks
            if step == max_tokens - 1 or all(s.done for s in samples):
                return
            feed = [filler if t is None else t for t in tokens]
            logits = self._forward(torch.tensor(feed, dtype=torch.long, device=self.device)[:, None], cache)

    def generate_batch(
        self, prompt_ids: list[int], num_samples: int = 1, max_tokens: int = 256, **sampling
    ) -> tuple[list[list[int]], list[list[int]]]:
        """Complete one prompt `num_samples` times: (token lists, mask lists), prompt excluded.

        A sample that stopped ends with its stop token (mask 1); one without it ran out of
        max_tokens (or of context). Sampling settings as in generate()."""
        tokens: list[list[int]] = [[] for _ in range(num_samples)]
        masks: list[list[int]] = [[] for _ in range(num_samples)]
        for step_tokens, step_masks in self.generate(prompt_ids, num_samples, max_tokens, **sampling):
            for i, (token, mask) in enumerate(zip(step_tokens, step_masks, strict=True)):
                if token is not None:
                    tokens[i].append(token)
                    masks[i].append(mask)
        return tokens, masks

    def stream_text(
        self, prompt_ids: list[int], num_samples: int = 1, max_tokens: int = 256, **sampling
    ) -> Iterator[TextEvent]:
        """generate() as text: one TextEvent per token of each sample, then a closing event for
        each sample that ran out of tokens. Stop tokens end a sample and add no text."""
        decoders = [TextDecoder(self.tokenizer) for _ in range(num_samples)]
        finished = [False] * num_samples
        for step_tokens, _ in self.generate(prompt_ids, num_samples, max_tokens, **sampling):
            for i, token in enumerate(step_tokens):
                if token is None:
                    continue
                if token in self.stop_ids:
                    finished[i] = True
                    yield TextEvent(i, token, decoders[i].flush(), "stop")
                else:
                    yield TextEvent(i, token, decoders[i].push(token), None)
        for i, done in enumerate(finished):
            if not done:
                yield TextEvent(i, None, decoders[i].flush(), "length")

    # -------------------------------------------------------------------------------------- chat

    def chat_prompt(self, conversation: Conversation, max_tokens: int = 256) -> FittedPrompt:
        """The fitted prompt that asks for the assistant's reply to `conversation`.

        The conversation must end with a user message. Text that cannot be encoded (lone
        surrogates) is replaced, so odd input never crashes; user text is tokenized as plain text,
        so special-token strings typed by a user stay ordinary text."""
        conversation = {"messages": [_clean_message(m) for m in conversation.get("messages") or []]}
        validate(conversation)
        if conversation["messages"][-1]["role"] != "user":
            raise ValueError("the conversation must end with a user message to get a reply")
        return self.fit_prompt(self.tokenizer.render_for_completion(conversation), max_tokens)

    def chat(self, conversation: Conversation, max_tokens: int = 256, **sampling) -> ChatReply:
        """The assistant's next reply to `conversation`, streamed as text deltas (see ChatReply)."""
        check_sampling(sampling.get("temperature", 1.0), sampling.get("top_k"), sampling.get("top_p"), max_tokens)
        return ChatReply(self, self.chat_prompt(conversation, max_tokens), sampling)


def _clean_text(text: str) -> str:
    return text.encode("utf-8", errors="replace").decode("utf-8")


def _clean_message(message: dict) -> dict:
    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": _clean_text(content)}
    if isinstance(content, list):
        parts = [{**p, "text": _clean_text(p["text"])} if isinstance(p.get("text"), str) else p for p in content]
        return {**message, "content": parts}
    return message


class ChatReply:
    """An iterator of text deltas of one reply, with what the caller may want to show beside it.

    `notice` (prompt cut) is set before iteration starts; `tokens`, `text` and `finish_reason`
    ("stop" at a stop token, "length" at the token budget) fill in as it runs."""

    def __init__(self, engine: Engine, fitted: FittedPrompt, sampling: dict) -> None:
        self.notice = fitted.notice
        self.prompt_tokens = len(fitted.ids)
        self.tokens: list[int] = []
        self.text = ""
        self.finish_reason: str | None = None
        self._events = engine.stream_text(fitted.ids, 1, fitted.max_tokens, **sampling)

    def __iter__(self) -> ChatReply:
        return self

    def __next__(self) -> str:
        for event in self._events:
            if event.token is not None:
                self.tokens.append(event.token)
            self.finish_reason = event.finish_reason
            if event.text:
                self.text += event.text
                return event.text
        raise StopIteration

    def read(self) -> str:
        """Run to the end; the whole reply text."""
        for _ in self:
            pass
        return self.text
