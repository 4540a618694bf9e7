"""Training throughput of the GPT on real data: median step time, tokens/s, MFU, peak memory.

    python bench/train_throughput.py --depth 4 --dim 256 --seq 512 --batch 8 --precision bf16
    python bench/train_throughput.py --data artifacts/data/<key> --tokenizer artifacts/tokenizer/<key>/tokenizer.model
    python bench/train_throughput.py --preset tiny        # the shape, precision and compile of a preset

A micro-batch = the next batch from llmstack's TextLoader (parquet shards, background tokenization)
+ forward + backward; an optimizer step (Muon+AdamW, or AdamW alone) follows every `--total-batch`
tokens of them, as in the pretrain stage (default: the recipe's batch for the model,
llmstack.config.recipe_batch_tokens: 1 micro-batch at d4, 4 at d6). `--data` is a data stage
folder (its manifest.json names the shards); without it a small embedded corpus is generated
and a BPE tokenizer trained on it in a temporary folder (`--vocab` tokens). Reports the median
optimizer step over the timed ones (after warmup steps that also absorb any torch.compile), so one slow
step from a neighbour on a shared machine does not skew it. MFU is against a peak measured as
the best of several matmul shapes in the training dtype, before and after the steps (a data-sheet
figure on known CUDA cards); the peak is printed. `--matmul-floor` also records every matmul of one
optimizer step (run eagerly), times each alone at its shape, strides and dtype, and prints their
sum and the MFU it would allow if nothing else in the step took time.

Measured on the 2-core Intel Xeon with AMX (amx_bf16, avx512_bf16), torch 2.13 CPU, 2026-11-30,
the embedded corpus through TextLoader, seq 512, batch 8, vocab 4096, head dim 128, torch.compile,
Muon+AdamW; the peak read 2.9-4.0 TFLOP/s (bf16) across runs of one session, fp32 ~370-420 GFLOP/s:

    shape           precision   micro-batches   optimizer step   tok/s    MFU    matmul floor (ceiling)
    d4 (dim 256)    bf16        1               199-217 ms       20,589   16-17%  96 ms = 44% (36%)
    d6 (dim 384)    bf16        1               515 ms            7,948   22%    264 ms = 51% (43%)
    d6 (dim 384)    bf16        4 (recipe)      1,637 ms         10,009   22%    839 ms = 51% (44%)
    d4 (dim 256)    fp32        1               597 ms            6,866   59% of the fp32 peak

The previous commit in the same session: d4 224.5 ms (18,247 tok/s), d6 recipe 1,904 ms. What
changed: attention in one chunk at T <= 512 on contiguous q/k/v with a softmax that needs no max
pass (llmstack.cpu_attention), the loss's softmax likewise (llmstack.lm_loss). Where a d4 bf16 step
goes (torch.profiler, ms): matmuls 73 (weight gradients ~1.2 TFLOP/s: oneDNN is slow with a
transposed first operand, and a transposed copy costs more than it saves), attention matmuls 24,
Newton-Schulz 15, the loss's elementwise pass 14, the attention softmax 13, then memory-bound
norms, rotary, ReLU^2 and optimizer updates in 1-6 ms kernels.
"""

from __future__ import annotations

import argparse
import collections
import math
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from llmstack.config import PretrainConfig, recipe_batch_tokens
from llmstack.data.shards import iter_texts, shard_paths
from llmstack.dataloader import TextLoader
from llmstack.device import autocast_context, autocast_dtype, measured_peak, setup_device, synchronize
from llmstack.model import GPT, GPTConfig, dims_from_depth
from llmstack.optim import build_optimizers
from llmstack.tokenizer import Tokenizer, train_tokenizer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=4, help="transformer layers")
    ap.add_argument("--dim", type=int, default=0, help="model width (0: depth * 64, as dims_from_depth)")
    ap.add_argument("--head-dim", type=int, default=128, help="head dim (capped at the width)")
    ap.add_argument("--kv-ratio", type=int, default=1, help="query heads per key/value head")
    ap.add_argument("--seq", type=int, default=512, help="sequence length")
    ap.add_argument("--batch", type=int, default=8, help="sequences per micro-batch (one forward/backward)")
    ap.add_argument(
        "--total-batch",
        type=int,
        default=0,
        help="tokens per optimizer step, micro-batches accumulated as the stage does "
        "(0: the recipe's batch for this model, llmstack.config.recipe_batch_tokens)",
    )
    ap.add_argument(
        "--vocab", type=int, default=4096, help="vocabulary size of the tokenizer trained without --tokenizer"
    )
    ap.add_argument(
        "--data", default="", help="a data stage folder holding manifest.json (default: a generated corpus)"
    )
    ap.add_argument("--tokenizer", default="", help="tokenizer.model for --data (default: train one on the data)")
    ap.add_argument("--corpus-bytes", type=int, default=3_000_000, help="size of the generated corpus")
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compile happens here)")
    ap.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--optimizer", choices=("muon", "adamw"), default="muon")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: all usable cores)")
    ap.add_argument("--preset", default="", help="take the model and batch shape of a config preset (e.g. tiny)")
    ap.add_argument(
        "--matmul-floor",
        action="store_true",
        help="also time every matmul of one optimizer step alone (the step's floor with this matmul library)",
    )
    args = ap.parse_args(argv)
    if args.preset:
        from llmstack.config import compose_config

        cfg = compose_config(args.preset)
        m, p = cfg.model, cfg.pretrain
        args.depth, args.dim, args.seq, args.vocab = m.depth, m.n_embd, m.seq_len, m.vocab_size
        args.head_dim, args.kv_ratio = m.n_embd // m.n_head, m.n_head // m.n_kv_head
        args.batch = p.device_batch_size or args.batch
        args.total_batch = p.total_batch_tokens
        args.precision, args.compile = p.precision, args.compile or p.compile
    return args


def build(args: argparse.Namespace, device: torch.device) -> tuple[GPT, list[torch.optim.Optimizer]]:
    dims = dims_from_depth(args.depth, head_dim=args.head_dim, kv_ratio=args.kv_ratio)
    if args.dim:
        head_dim = min(args.head_dim, args.dim)
        if args.dim % head_dim:
            sys.exit(f"--dim {args.dim} is not a multiple of the head dim {head_dim}")
        n_head = args.dim // head_dim
        n_kv = max(1, n_head // args.kv_ratio)
        while n_head % n_kv:
            n_kv -= 1
        dims.update(n_embd=args.dim, n_head=n_head, n_kv_head=n_kv)
    config = GPTConfig(vocab_size=args.vocab, seq_len=args.seq, **dims)
    model = GPT(config).to(device)
    if args.optimizer == "muon":
        optimizers = build_optimizers(model)
    else:
        optimizers = [torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.8, 0.95), eps=1e-10, fused=True)]
    return model, optimizers


def prepare_data(args: argparse.Namespace, workdir: Path) -> tuple[list[Path], Tokenizer]:
    """Training shards and a tokenizer: --data/--tokenizer, or a generated corpus in `workdir`."""
    if args.data:
        folder = Path(args.data)
    else:
        from llmstack.config import DataConfig, EmbeddedSource
        from llmstack.data.sources import build_data

        folder = workdir / "data"
        folder.mkdir()
        src = EmbeddedSource(train_bytes=args.corpus_bytes, val_bytes=20_000, shard_bytes=args.corpus_bytes // 2)
        build_data(DataConfig(source="embedded", embedded=src, rows_per_group=256), folder)
    shards, _ = shard_paths(folder / "manifest.json")
    if args.tokenizer:
        return shards, Tokenizer.load(args.tokenizer)
    path = train_tokenizer(iter_texts(shards), workdir / "tokenizer.model", vocab_size=args.vocab, max_chars=2_000_000)
    return shards, Tokenizer.load(path)


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB (max allocated)"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB (max RSS)"


def accumulation_steps(args: argparse.Namespace, model: GPT) -> int:
    """Micro-batches per optimizer step: --total-batch (or the recipe's) over one micro-batch's tokens."""
    micro = args.batch * model.config.seq_len
    horizon = PretrainConfig.tokens_params_ratio * model.num_scaling_params()  # the recipe's default ratio
    total = args.total_batch or recipe_batch_tokens(horizon, model.config.seq_len)
    if total % micro and total > micro:
        sys.exit(f"--total-batch {total} is not a multiple of batch x seq = {micro}")
    return max(1, total // micro)


def make_train_step(args, model, optimizers, loader, device, dtype, compile_model: bool):
    """One optimizer step: args.accum micro-batches from the loader, then every optimizer; returns the loss."""
    step_model = torch.compile(model) if compile_model else model

    def train_step() -> float:
        losses = []
        for _ in range(args.accum):
            x, y = next(loader)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast_context(device, dtype):
                loss = step_model(x, y) / args.accum
            loss.backward()
            losses.append(loss.detach())
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        return torch.stack(losses).sum().item()

    return train_step


def time_steps(args, train_step, device) -> tuple[list[float], list[float], float]:
    """(seconds, mean loss) of each timed optimizer step, and the warmup's seconds."""
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        train_step()
    synchronize(device)
    warmup_s = time.perf_counter() - t0
    times, losses = [], []
    for _ in range(args.steps):
        t = time.perf_counter()
        losses.append(train_step())
        synchronize(device)
        times.append(time.perf_counter() - t)
    return times, losses, warmup_s


_MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default,
            torch.ops.aten.baddbmm.default}  # fmt: skip


class _RecordMatmuls(TorchDispatchMode):
    """Counts each distinct matmul call: (op, shapes + strides + dtypes of its tensors, scalars)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _MATMULS:
            spec = tuple((tuple(a.shape), a.stride(), a.dtype) if isinstance(a, torch.Tensor) else a for a in args)
            self.calls[func, spec, tuple(sorted(kwargs.items()))] += 1
        return func(*args, **kwargs)


def _matmul_flops(spec: tuple) -> int:
    a, b = [shape for shape, _, _ in (x for x in spec if isinstance(x, tuple))][-2:]
    return 2 * math.prod(a) * b[-1]  # (.., m, k) x (.., k, n)


def _operand(x, device: torch.device):
    """A random tensor with the recorded (shape, strides, dtype), or the recorded scalar itself."""
    if not isinstance(x, tuple):
        return x
    shape, stride, dtype = x
    storage = 1 + sum((d - 1) * s for d, s in zip(shape, stride, strict=True))
    return torch.randn(storage, device=device).to(dtype).as_strided(shape, stride)


def matmul_floor(train_step, device: torch.device, repeats: int = 7) -> tuple[float, float, int, int]:
    """(seconds, FLOPs, calls, distinct calls) of the matmuls of one optimizer step run eagerly, each
    timed alone on random operands of the same shapes, strides and dtypes (median of `repeats`).

    What the step would take if everything between the matmuls were free and each matmul ran at the
    speed this matmul library reaches for it: MFU cannot exceed model FLOPs / this time / peak
    without faster matmul kernels."""
    with _RecordMatmuls() as rec:
        train_step()
    total_s = total_flops = 0.0
    for (func, spec, kwargs), count in rec.calls.items():
        args, kwargs = [_operand(x, device) for x in spec], dict(kwargs)
        times = []
        for _ in range(repeats + 2):  # two warm-ups
            synchronize(device)
            t = time.perf_counter()
            func(*args, **kwargs)
            synchronize(device)
            times.append(time.perf_counter() - t)
        total_s += count * statistics.median(times[2:])
        total_flops += count * _matmul_flops(spec)
    return total_s, total_flops, rec.calls.total(), len(rec.calls)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = setup_device(args.device, args.threads)
    dtype = autocast_dtype(device, args.precision)
    # Measured before and after the steps, the higher one kept: a shared machine's speed drifts, and a
    # peak read in a slow minute would overstate MFU.
    peak_before = measured_peak(device, dtype or torch.float32, seconds=1.0)
    with tempfile.TemporaryDirectory(prefix="llmstack-bench-") as tmp:
        shards, tokenizer = prepare_data(args, Path(tmp))
        args.vocab = tokenizer.vocab_size
        torch.manual_seed(0)
        model, optimizers = build(args, device)
        cfg = model.config
        args.accum = accumulation_steps(args, model)
        loader = TextLoader(shards, tokenizer, args.batch, cfg.seq_len)
        try:
            step = make_train_step(args, model, optimizers, loader, device, dtype, args.compile)
            times, losses, warmup_s = time_steps(args, step, device)
            if args.matmul_floor:  # eager, so the recorder sees each matmul the step runs
                eager_step = make_train_step(args, model, optimizers, loader, device, dtype, compile_model=False)
                floor = matmul_floor(eager_step, device)
        finally:
            loader.close()
    step_s = statistics.median(times)
    tok_s = args.accum * args.batch * cfg.seq_len / step_s
    peak_after = measured_peak(device, dtype or torch.float32, seconds=1.0)
    peak, peak_from = max(peak_before, peak_after)
    mfu = model.flops_per_token() * tok_s / peak
    print(f"device {device} threads {torch.get_num_threads()} precision {dtype or torch.float32} "
          f"compile {args.compile} optimizer {args.optimizer}; data {args.data or 'generated corpus'} "
          f"({len(shards)} shards)")  # fmt: skip
    print(f"model L{cfg.n_layer} D{cfg.n_embd} H{cfg.n_head} KV{cfg.n_kv_head} T{cfg.seq_len} V{cfg.vocab_size} "
          f"batch {args.batch} x {args.accum} micro-batches per optimizer step: "
          f"{model.num_params():,} params ({model.num_scaling_params():,} scaling), "
          f"{model.flops_per_token() / 1e6:.1f} MFLOP/token")  # fmt: skip
    print(f"peak {peak / 1e9:,.0f} GFLOP/s ({peak_from}, {dtype or torch.float32}; the higher of "
          f"{peak_before[0] / 1e9:,.0f} before and {peak_after[0] / 1e9:,.0f} after the steps)")  # fmt: skip
    print(f"warmup {args.warmup} steps {warmup_s:.1f}s; loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    print(f"optimizer step {step_s * 1e3:.1f} ms median (min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f}) | "
          f"{tok_s:,.0f} tok/s | MFU {100 * mfu:.1f}% | peak mem {peak_memory(device)}")  # fmt: skip
    if args.matmul_floor:
        floor_s, floor_flops, calls, distinct = floor
        ceiling = model.flops_per_token() * args.accum * args.batch * cfg.seq_len / floor_s / peak
        print(f"matmul floor {floor_s * 1e3:.1f} ms per optimizer step ({calls} matmuls, {distinct} distinct, "
              f"{floor_flops / 1e9:.1f} GFLOP at {floor_flops / floor_s / 1e9:,.0f} GFLOP/s, each timed alone) = "
              f"{100 * floor_s / step_s:.0f}% of the step; MFU ceiling with these matmul kernels "
              f"{100 * ceiling:.1f}%")  # fmt: skip


if __name__ == "__main__":
    main()
