"""Training throughput of the GPT: tokens/s, MFU, peak memory for full train steps.

    python bench/train_throughput.py --depth 4 --dim 256 --seq 512 --batch 8 --vocab 4096 --precision bf16
    python bench/train_throughput.py --preset tiny        # the shape, precision and compile of a preset

One step = forward + backward + optimizer step (Muon+AdamW, or AdamW alone) on random tokens.
Reports the median step time over the timed steps (after warmup steps that also absorb any
torch.compile), so one slow step from a neighbour process on a shared machine does not skew it.

Measured on the 2-core AMD EPYC dev machine (AVX512-BF16, no AMX; best of several runs taken
while the shared machine was idle), depth 4, dim 256, seq 512, batch 8, vocab 4096:

    precision  compile  optimizer    tok/s   MFU
    bf16       yes      muon         7,400   54%   (min step 478 ms = 8.6k tok/s)
    bf16       yes      adamw        9,100   66%
    bf16       no       muon         4,800   35%
    fp32       yes      muon         4,300   75%   (of the fp32 peak)
    fp32       no       muon         3,300   53%

The step is matmul-bound: per 4,096-token step, 103 GFLOP of weight matmuls, 16 of causal
attention (4 query chunks) and 20 of Newton-Schulz (5 iterations over 16 256x256 and 8 256x1024
blocks) make 139 GFLOP, 325 ms at the ~430 GFLOP/s bf16 matmul peak of these two cores (12.6k
tok/s) before any elementwise work: softcapped cross-entropy over 4096x4096 logits, norms,
rotary, softmax and optimizer updates fill the rest of the ~550 ms compiled step.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

import torch

from llmstack.device import autocast_context, autocast_dtype, peak_flops, setup_device
from llmstack.model import GPT, GPTConfig, dims_from_depth
from llmstack.optim import build_optimizers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=4, help="transformer layers")
    ap.add_argument("--dim", type=int, default=0, help="model width (0: depth * 64, as dims_from_depth)")
    ap.add_argument("--head-dim", type=int, default=128, help="head dim (capped at the width)")
    ap.add_argument("--kv-ratio", type=int, default=1, help="query heads per key/value head")
    ap.add_argument("--seq", type=int, default=512, help="sequence length")
    ap.add_argument("--batch", type=int, default=8, help="sequences per step")
    ap.add_argument("--vocab", type=int, default=4096, help="vocabulary size")
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compile happens here)")
    ap.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--optimizer", choices=("muon", "adamw"), default="muon")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: all usable cores)")
    ap.add_argument("--preset", default="", help="take the model and batch shape of a config preset (e.g. tiny)")
    args = ap.parse_args(argv)
    if args.preset:
        from llmstack.config import compose_config

        cfg = compose_config(args.preset)
        m, p = cfg.model, cfg.pretrain
        args.depth, args.dim, args.seq, args.vocab = m.depth, m.n_embd, m.seq_len, m.vocab_size
        args.head_dim, args.kv_ratio = m.n_embd // m.n_head, m.n_head // m.n_kv_head
        args.batch = p.device_batch_size or args.batch
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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = setup_device(args.device, args.threads)
    dtype = autocast_dtype(device, args.precision)
    torch.manual_seed(0)
    model, optimizers = build(args, device)
    step_model = torch.compile(model) if args.compile else model
    cfg = model.config
    x = torch.randint(0, cfg.vocab_size, (args.batch, cfg.seq_len), device=device)
    y = torch.randint(0, cfg.vocab_size, (args.batch, cfg.seq_len), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def train_step() -> float:
        with autocast_context(device, dtype):
            loss = step_model(x, y)
        loss.backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        return loss.item()

    t0 = time.perf_counter()
    for _ in range(args.warmup):
        train_step()
    sync()
    warmup_s = time.perf_counter() - t0
    times, losses = [], []
    for _ in range(args.steps):
        t = time.perf_counter()
        losses.append(train_step())
        sync()
        times.append(time.perf_counter() - t)

    tokens = args.batch * cfg.seq_len
    step_s = statistics.median(times)
    tok_s = tokens / step_s
    peak = peak_flops(device, dtype or torch.float32)
    mfu = model.flops_per_token() * tok_s / peak
    if device.type == "cuda":
        mem = f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB (max allocated)"
    else:
        mem = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB (max RSS)"
    print(
        f"device {device} threads {torch.get_num_threads()} precision {dtype or torch.float32} "
        f"compile {args.compile} optimizer {args.optimizer}"
    )
    print(
        f"model L{cfg.n_layer} D{cfg.n_embd} H{cfg.n_head} KV{cfg.n_kv_head} T{cfg.seq_len} V{cfg.vocab_size} "
        f"batch {args.batch}: {model.num_params():,} params ({model.num_scaling_params():,} scaling), "
        f"{model.flops_per_token() / 1e6:.1f} MFLOP/token"
    )
    print(f"warmup {args.warmup} steps {warmup_s:.1f}s; loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    print(
        f"step {step_s * 1e3:.1f} ms median (min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f}) | "
        f"{tok_s:,.0f} tok/s | MFU {100 * mfu:.1f}% of {peak / 1e9:,.0f} GFLOP/s | peak mem {mem}"
    )


if __name__ == "__main__":
    main()
