"""Inference speed: decode tokens/s with and without the KV cache, time to first token, and the
throughput of batched sampling (several completions of one prompt sharing its prefill).

    python bench/inference.py                                  # random tiny model: depth 4, dim 256
    python bench/inference.py --depth 8 --batch-sizes 1,8,32 --device cuda
    python bench/inference.py --model artifacts/sft/<key>/model.pt

Each step does what llmstack.engine does per step: a forward under the device's autocast, then
top-k sampling and a host sync for the sampled ids. The step loops ignore stop tokens, so every
run decodes exactly --new-tokens tokens. Figures are medians over --repeats runs after a warmup.

Measured on the 2-core AMX CPU (depth 4, dim 256, random weights, shared machine: +-20%): batch-1
decode ~300 tok/s with the cache vs ~50 without; batch 8 ~1.8k tok/s in fp32, ~1.4k under bf16
autocast (decode is overhead-bound at this size; bf16 only wins the prefill).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from llmstack.device import autocast_context, autocast_dtype, setup_device
from llmstack.engine import kv_cache_dtype, sample_next
from llmstack.model import GPT, GPTConfig, dims_from_depth


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a model.pt to time (default: a random model)")
    ap.add_argument("--tokenizer", default=None, help="its tokenizer.model: adds rows for the Engine's chat path")
    ap.add_argument("--depth", type=int, default=4, help="random model: layers (width = depth * 64)")
    ap.add_argument("--head-dim", type=int, default=64, help="random model: head dim")
    ap.add_argument("--kv-ratio", type=int, default=2, help="random model: query heads per key/value head")
    ap.add_argument("--seq", type=int, default=512, help="random model: context length")
    ap.add_argument("--vocab", type=int, default=4096, help="random model: vocabulary size")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batch-sizes", default="1,4,8", help="comma-separated samples per prompt")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: all usable cores)")
    return ap.parse_args(argv)


def build_model(args: argparse.Namespace, device: torch.device) -> GPT:
    if args.model:
        from llmstack.checkpoint import load_model

        return load_model(args.model, device)[0]
    dims = dims_from_depth(args.depth, head_dim=args.head_dim, kv_ratio=args.kv_ratio)
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=args.vocab, seq_len=args.seq, **dims)).to(device).eval()


class Timer:
    def __init__(self, model: GPT, device: torch.device, dtype: torch.dtype | None) -> None:
        self.model, self.device, self.dtype = model, device, dtype
        self.generator = torch.Generator(device=device).manual_seed(0)
        self.cache_dtype = kv_cache_dtype(model, device, dtype)  # as the engine caches

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def logits(self, ids: torch.Tensor, cache=None) -> torch.Tensor:
        with torch.no_grad(), autocast_context(self.device, self.dtype):
            return self.model(ids, kv_cache=cache)[:, -1, :]

    def next_ids(self, logits: torch.Tensor) -> torch.Tensor:
        ids = sample_next(logits, self.generator, temperature=1.0, top_k=50)
        ids.tolist()  # the engine reads the ids on the host every step (tool calls, stop tokens)
        return ids[:, None]

    def cached(self, prompt: torch.Tensor, new_tokens: int, batch: int) -> tuple[float, float]:
        """(seconds to the first token, seconds in all) for `batch` samples with the KV cache."""
        self.sync()
        start = time.perf_counter()
        cache = self.model.new_kv_cache(1, prompt.size(1) + new_tokens, device=self.device, dtype=self.cache_dtype)
        logits = self.logits(prompt, cache)
        if batch > 1:
            cache, logits = cache.expand(batch), logits.expand(batch, -1)
        ids = self.next_ids(logits)
        first = time.perf_counter() - start
        for _ in range(new_tokens - 1):
            ids = self.next_ids(self.logits(ids, cache))
        self.sync()
        return first, time.perf_counter() - start

    def uncached(self, prompt: torch.Tensor, new_tokens: int) -> float:
        """Seconds for batch-1 decoding that recomputes the whole sequence at every step."""
        self.sync()
        start = time.perf_counter()
        seq = prompt
        for _ in range(new_tokens):
            seq = torch.cat([seq, self.next_ids(self.logits(seq))], dim=1)
        self.sync()
        return time.perf_counter() - start


def engine_rows(model: GPT, args: argparse.Namespace) -> list[tuple[str, str]]:
    """The whole chat path (render, prefill, sampling, tool state, detokenizing) through Engine.chat."""
    from llmstack.engine import Engine
    from llmstack.tokenizer import Tokenizer

    engine = Engine(model, Tokenizer.load(args.tokenizer), precision=args.precision)
    conversation = {"messages": [{"role": "user", "content": "Tell me a story about a river and a city."}]}

    def run() -> tuple[float, float, int]:
        start = time.perf_counter()
        reply = engine.chat(conversation, max_tokens=args.new_tokens, temperature=0.8, top_k=50, seed=0)
        first = None
        for _ in reply:
            first = first or time.perf_counter() - start
        total = time.perf_counter() - start
        return first or total, total, len(reply.tokens)

    run()
    runs = [run() for _ in range(args.repeats)]
    first = statistics.median(r[0] for r in runs)
    rate = statistics.median(r[2] / r[1] for r in runs)
    return [
        ("Engine.chat: time to first text", f"{first * 1e3:8.1f} ms"),
        (f"Engine.chat: tokens/s ({runs[0][2]} tokens, incl. prefill)", f"{rate:8.1f} tok/s"),
    ]


def median_of(repeats: int, fn: Callable[[], float]) -> float:
    fn()  # warmup: allocator, kernels, autocast caches
    return statistics.median(fn() for _ in range(repeats))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = setup_device(args.device, args.threads)
    dtype = autocast_dtype(device, args.precision)
    model = build_model(args, device)
    c = model.config
    n = args.new_tokens
    if args.prompt_tokens + n > c.seq_len:
        raise SystemExit(f"--prompt-tokens + --new-tokens = {args.prompt_tokens + n} > the context {c.seq_len}")
    timer = Timer(model, device, dtype)
    prompt = torch.randint(0, c.vocab_size, (1, args.prompt_tokens), device=device)
    source = args.model or "random weights"
    print(f"model: {source}; depth {c.n_layer}, dim {c.n_embd}, heads {c.n_head}/{c.n_kv_head} kv, "
          f"vocab {c.vocab_size}, context {c.seq_len}, {model.num_params() / 1e6:.1f}M params")  # fmt: skip
    print(
        f"device: {device} ({torch.get_num_threads()} threads), autocast {dtype or 'off (fp32)'}; "
        f"prompt {args.prompt_tokens} tokens, {n} new tokens, top-k 50 sampling, median of {args.repeats}\n"
    )

    rows: list[tuple[str, str]] = []
    runs = [timer.cached(prompt, n, 1) for _ in range(args.repeats + 1)][1:]  # the first one warms up
    ttft = statistics.median(first for first, _ in runs)
    decode = statistics.median((n - 1) / (total - first) for first, total in runs)
    rows.append(("time to first token (prefill + 1 sample)", f"{ttft * 1e3:8.1f} ms"))
    rows.append(("decode with KV cache, batch 1", f"{decode:8.1f} tok/s"))
    no_cache = median_of(args.repeats, lambda: timer.uncached(prompt, n))
    rows.append(("decode without cache (full recompute), batch 1", f"{n / no_cache:8.1f} tok/s"))
    for b in (int(x) for x in args.batch_sizes.split(",")):
        total = median_of(args.repeats, lambda b=b: timer.cached(prompt, n, b)[1])
        rows.append((f"batched sampling, {b} samples (incl. prefill)", f"{b * n / total:8.1f} tok/s"))
    if args.tokenizer:
        rows += engine_rows(model, args)
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':{width}s}  value")
    for name, value in rows:
        print(f"{name:{width}s}  {value}")


if __name__ == "__main__":
    main()
