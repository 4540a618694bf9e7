"""Inference speed through llmstack's Engine, in the shape other engines report: a fixed prompt
length, a fixed number of new tokens (stop tokens ignored), greedy, per batch size: decode tok/s,
time to first token, peak memory.

    python bench/inference.py                                   # random model: depth 4, dim 256, vocab 4096
    python bench/inference.py --prompt-tokens 64 --new-tokens 256 --batch-sizes 1,8
    python bench/inference.py --model artifacts/sft/<key>/model.pt --tokenizer artifacts/tokenizer/<key>/tokenizer.model
    python bench/inference.py --compare-engine /tmp/engine_old.py --compare-precision fp32   # A/B, alternating

A batch of B is B samples of one prompt (one prefill, the KV cache copied B times), as Engine
runs them. The prompt is fixed token ids (1..P, or --prompt-file's first P ids), so runs with
other engines can feed the same ids. Decode tok/s = B * (N - 1) / (time after the first token);
TTFT = prefill + first sample. Figures are medians of --repeats runs after one warmup; with
--compare-engine the two engines alternate run by run, so a noisy neighbour hits both alike.
Peak memory: CUDA max allocated per row; on CPU the process's max RSS so far (it never falls).
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import statistics
import sys
import time

import torch

from llmstack.device import setup_device, synchronize
from llmstack.engine import Engine
from llmstack.model import GPT, GPTConfig, dims_from_depth
from llmstack.tokenizer import SPECIAL_TOKENS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a model.pt (default: random weights)")
    ap.add_argument("--tokenizer", default=None, help="its tokenizer.model (default: a stand-in with the specials)")
    ap.add_argument("--depth", type=int, default=4, help="random model: layers")
    ap.add_argument("--dim", type=int, default=256, help="random model: width")
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--kv-ratio", type=int, default=2, help="query heads per key/value head")
    ap.add_argument("--seq", type=int, default=512, help="random model: context length")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--batch-sizes", default="1,8", help="comma-separated samples per prompt")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    ap.add_argument("--reference", action="store_true", help="decode through GPT.forward (Engine fast=False)")
    ap.add_argument("--compare-engine", default=None, help="another engine.py to time beside this one")
    ap.add_argument("--compare-precision", choices=("auto", "bf16", "fp32"), default="fp32")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: all usable cores)")
    return ap.parse_args(argv)


class StandInTokenizer:
    """What Engine needs of a tokenizer when only speed matters: the vocab and special ids."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size, self.bos_id = vocab_size, vocab_size - len(SPECIAL_TOKENS)

    def special_id(self, name: str) -> int:
        return self.bos_id + SPECIAL_TOKENS.index(name)

    def encode(self, text: str) -> list[int]:
        return []

    def decode(self, ids) -> str:
        return ""


def build_model(args: argparse.Namespace, device: torch.device) -> GPT:
    if args.model:
        from llmstack.checkpoint import load_model

        return load_model(args.model, device)[0]
    dims = dims_from_depth(args.depth, aspect_ratio=args.dim // args.depth, head_dim=args.head_dim,
                           kv_ratio=args.kv_ratio)  # fmt: skip
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=args.vocab, seq_len=args.seq, **dims))
    with torch.no_grad():  # the init zeroes output projections: random ones exercise every layer
        for p in model.parameters():
            p.normal_(0.0, 0.05)
    return model.to(device).eval()


def load_engine_class(path: str):
    """Engine from another engine.py (e.g. a saved copy of an older version)."""
    spec = importlib.util.spec_from_file_location("compare_engine", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["compare_engine"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.Engine


def ignore_stops(engine) -> None:
    """Decode exactly the requested tokens: no stop token ends a sample, no tool call is run."""
    engine.stop_ids = frozenset()
    engine.python_start = -1


def timed_run(engine, prompt: list[int], batch: int, new_tokens: int, device: torch.device) -> tuple[float, float]:
    """(seconds to the first token, decode tok/s after it) of one greedy generation."""
    synchronize(device)
    start = time.perf_counter()
    first = None
    for _ in engine.generate(prompt, num_samples=batch, max_tokens=new_tokens, temperature=0):
        first = first or time.perf_counter() - start  # tokens are on the host: the step is done
    synchronize(device)
    total = time.perf_counter() - start
    return first, batch * (new_tokens - 1) / (total - first)


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB RSS"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = setup_device(args.device, args.threads)
    model = build_model(args, device)
    c = model.config
    if args.prompt_tokens + args.new_tokens > c.seq_len or args.new_tokens < 2:
        sys.exit(f"need 2 <= --new-tokens and --prompt-tokens + --new-tokens <= the context {c.seq_len}")
    if args.tokenizer:
        from llmstack.tokenizer import Tokenizer

        tokenizer = Tokenizer.load(args.tokenizer)
    else:
        tokenizer = StandInTokenizer(c.vocab_size)
    engines = {f"llmstack {args.precision}" + (" reference" if args.reference else ""):
               Engine(model, tokenizer, precision=args.precision, fast=not args.reference)}  # fmt: skip
    if args.compare_engine:
        other = load_engine_class(args.compare_engine)
        engines[f"{args.compare_engine} {args.compare_precision}"] = other(
            model, tokenizer, precision=args.compare_precision
        )
    for engine in engines.values():
        ignore_stops(engine)
    prompt = [1 + i % (tokenizer.bos_id - 1) for i in range(args.prompt_tokens)]
    print(f"model: {args.model or 'random weights'}; depth {c.n_layer}, dim {c.n_embd}, "
          f"heads {c.n_head}/{c.n_kv_head} kv, "
          f"vocab {c.vocab_size}; device {device} ({torch.get_num_threads()} threads)")  # fmt: skip
    print(f"prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens, greedy, stops ignored, "
          f"median of {args.repeats}\n")  # fmt: skip
    width = max(len(name) for name in engines)
    print(f"{'engine':{width}s}  batch  decode tok/s  TTFT ms  peak memory")
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in engines}
        for i in range(args.repeats + 1):  # the first round warms up
            for name, engine in engines.items():
                run = timed_run(engine, prompt, batch, args.new_tokens, device)
                if i:
                    runs[name].append(run)
        for name, rs in runs.items():
            ttft, rate = statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs)
            print(f"{name:{width}s}  {batch:5d}  {rate:12,.0f}  {ttft * 1e3:7.1f}  {peak_memory(device)}")


if __name__ == "__main__":
    main()
