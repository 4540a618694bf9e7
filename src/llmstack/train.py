"""The one training loop, shared by pretrain, midtrain and sft (different data, same loop).

What it does, in order: join the process group, move the model to this rank's device (DDP when
there are several), build Muon + AdamW, resume from the newest valid step checkpoint, then for each
step: validate every `eval_every` steps, accumulate gradients over micro-batches to the configured
total batch, clip, step with the scheduled LRs, log (progress bar + metrics.jsonl), sample from
fixed prompts, checkpoint every `ckpt_every` steps. The declared outputs (model.pt, metrics.json)
are written only at the very end, so Snakemake never sees a half-finished stage as done.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist
from torch.nn.parallel import DistributedDataParallel as DDP

from llmstack.checkpoint import Checkpointer, rng_state, save_model, set_rng_state, unwrap
from llmstack.device import autocast_context, autocast_dtype, peak_flops
from llmstack.distributed import Dist, all_reduce_mean, all_reduce_sum
from llmstack.model import GPT
from llmstack.optim import Muon, build_optimizers, lr_multiplier, muon_momentum
from llmstack.tokenizer import Tokenizer

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class TrainJob:
    """What a stage hands the loop: everything that differs between pretrain, midtrain and sft."""

    stage: str
    out_dir: Path
    cfg: dict[str, Any]  # the stage's TrainConfig section (plus execution settings)
    model: GPT  # built (pretrain, seeded) or loaded (chat stages), on the CPU
    tokenizer: Tokenizer
    make_loader: Callable[[int, Dist], Any]  # (device batch size, dist) -> stateful batch iterator
    make_val: Callable[[int, Dist], Batches]  # a fresh, fixed validation iterator
    total_steps: int
    sequences_per_step: int  # rows of seq_len per optimizer step, over all ranks
    lr_frac: float = 1.0  # chat stages start from a fraction of the pretraining LRs
    sample_prompts: list[str] = field(default_factory=list)
    sample_tokens: int = 48
    meta: dict[str, Any] = field(default_factory=dict)  # extra fields for model.pt / metrics.json
    fingerprint: str = ""  # of the input files; step checkpoints from other inputs are not resumed


def token_byte_lengths(tok: Tokenizer) -> torch.Tensor:
    """UTF-8 bytes each token id stands for (0 for special tokens), for bits-per-byte."""
    lengths = []
    for i in range(tok.vocab_size):
        piece = tok.id_to_piece(i)
        if tok.is_special(i):
            lengths.append(0)
        elif piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:
            lengths.append(1)  # a byte-fallback token
        else:
            lengths.append(len(piece.replace("\u2581", " ").encode("utf-8")))
    return torch.tensor(lengths, dtype=torch.float64)


@torch.no_grad()
def evaluate_loss(
    model: torch.nn.Module,
    batches: Batches,
    token_bytes: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype | None,
) -> dict[str, float]:
    """Mean loss (nats/token) over targets != -1 and bits per byte of those targets, over all ranks."""
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # nats, tokens, bytes
    tb = token_bytes.to(device)
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        with autocast_context(device, dtype):
            loss = model(x, y, loss_reduction="none").double()
        valid = y >= 0
        nbytes = torch.where(valid, tb[y.clamp(min=0)], 0.0)
        sums += torch.stack([loss[valid].sum(), valid.sum().double(), nbytes.sum()])
    all_reduce_sum(sums)
    model.train()
    nats, tokens, nbytes = sums.tolist()
    return {"loss": nats / max(tokens, 1), "bpb": nats / math.log(2) / max(nbytes, 1)}


def pick_device_batch(job: TrainJob, d: Dist, model: torch.nn.Module, dtype) -> int:
    """Sequences per forward: the configured size, else (CUDA) the largest power of two that fits
    in memory, else 8 on CPU; always a divisor of the sequences each rank needs per step."""
    per_rank = max(1, job.sequences_per_step // d.world_size)
    want = job.cfg.get("device_batch_size")
    if not want:
        want = (
            find_fitting_batch(model, per_rank, job.model.config.seq_len, d.device, dtype)
            if d.device.type == "cuda"
            else 8
        )
    want = max(1, min(want, per_rank))
    while per_rank % want:
        want -= 1
    return want


def find_fitting_batch(model: torch.nn.Module, max_batch: int, seq_len: int, device: torch.device, dtype) -> int:
    """Halve from max_batch until a forward+backward of that size runs without running out of memory."""
    batch = 2 ** int(math.log2(max(1, min(max_batch, 64))))
    vocab = unwrap(model).config.vocab_size
    while batch > 1:
        try:
            x = torch.randint(0, vocab, (batch, seq_len), device=device)
            with autocast_context(device, dtype):
                model(x, x).backward()
            model.zero_grad(set_to_none=True)
            break
        except torch.OutOfMemoryError:
            model.zero_grad(set_to_none=True)
            batch //= 2
        finally:
            torch.cuda.empty_cache()
    # Every rank must agree on one size: take the smallest.
    t = torch.tensor([batch], device=device)
    if torch_dist.is_initialized():
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MIN)
    return int(t.item())


def make_optimizers(model: torch.nn.Module, lrs: dict[str, Any], frac: float, dtype) -> list[torch.optim.Optimizer]:
    """Muon + AdamW at `frac` of the learning rates in `lrs` (matrix/embedding/unembedding_lr);
    in an fp32 run (dtype None) Muon orthogonalises in fp32 too."""
    opts = build_optimizers(
        model,
        matrix_lr=lrs["matrix_lr"] * frac,
        embedding_lr=lrs["embedding_lr"] * frac,
        unembedding_lr=lrs["unembedding_lr"] * frac,
        weight_decay=lrs.get("weight_decay", 0.0),
    )
    if dtype is None:
        for opt in opts:
            if isinstance(opt, Muon):
                opt.ns_dtype = torch.float32
    return opts


def restore(state: dict[str, Any], model: torch.nn.Module, opts: list[torch.optim.Optimizer]) -> int:
    """Load a step checkpoint's model and optimizer states; returns the step to continue from."""
    model.load_state_dict(state["model"])
    for opt, opt_state in zip(opts, state["optimizers"], strict=True):
        opt.load_state_dict(opt_state)
    return state["step"]


class MetricsLog:
    """metrics.jsonl of a stage run (rank 0 writes); on resume, entries past the resumed step go."""

    def __init__(self, path: Path, enabled: bool, resume_step: int):
        self.path, self.enabled = path, enabled
        self.history: list[dict] = []
        if enabled and path.exists():
            kept = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            self.history = [e for e in kept if e.get("step", 0) < resume_step]
            path.write_text("".join(json.dumps(e) + "\n" for e in self.history))

    def log(self, entry: dict) -> None:
        if self.enabled:
            self.history.append(entry)
            with open(self.path, "a") as f:
                f.write(json.dumps(entry) + "\n")


def sample(model: GPT, tok: Tokenizer, prompts: list[str], n_tokens: int, device, dtype) -> list[str]:
    """Greedy continuations of fixed prompts: a human-readable check that training works."""
    model.eval()
    out = []
    for prompt in prompts:
        ids = torch.tensor([[tok.bos_id, *tok.encode(prompt)]], device=device)
        with autocast_context(device, dtype):
            full = model.generate_greedy(ids, n_tokens)
        out.append(prompt + tok.decode(full[0, ids.size(1) :].tolist()))
    model.train()
    return out


def run_training(job: TrainJob, d: Dist) -> dict[str, Any]:
    """Train `job.model` for `job.total_steps` steps; returns the final metrics (also in metrics.json)."""
    cfg, out = job.cfg, job.out_dir
    device = d.device
    dtype = autocast_dtype(device, cfg.get("precision", "auto"))
    model = job.model.to(device)
    model.train()
    opts = make_optimizers(model, cfg, job.lr_frac, dtype)
    ckpt = Checkpointer(out / "ckpt", keep=cfg.get("keep_ckpts", 2), fingerprint=job.fingerprint)
    state = ckpt.load_latest()
    start = 0
    if state is not None:
        if len(state["loader"]) != d.world_size:
            raise RuntimeError(
                f"{ckpt.folder} was written by {len(state['loader'])} processes, this run has "
                f"{d.world_size}: resume with the same count, or delete the folder to restart"
            )
        start = restore(state, model, opts)
    train_model: torch.nn.Module = model
    if cfg.get("compile"):
        # A machine without a working compiler toolchain falls back to eager instead of failing.
        torch._dynamo.config.suppress_errors = True
        train_model = torch.compile(train_model)
    if d.world_size > 1:
        train_model = DDP(train_model, device_ids=[device.index] if device.type == "cuda" else None)

    B = pick_device_batch(job, d, train_model, dtype)
    accum = job.sequences_per_step // (B * d.world_size)
    if accum < 1 or job.sequences_per_step % (B * d.world_size):
        raise ValueError(
            f"{job.stage}: {job.sequences_per_step} sequences per step do not split into "
            f"{d.world_size} processes x batch {B}"
        )
    loader = job.make_loader(B, d)
    if state is not None:
        loader.load_state_dict(state["loader"][d.rank])
        set_rng_state(state["rng"][d.rank])
    token_bytes = token_byte_lengths(job.tokenizer)
    log = MetricsLog(out / "metrics.jsonl", d.is_main, start)
    flops_per_token = unwrap(model).flops_per_token()
    peak = peak_flops(device, dtype or torch.float32) * d.world_size
    if d.is_main:
        n = unwrap(model).num_params()
        print(
            f"[{job.stage}] {n:,} params on {d.world_size}x{device.type} ({dtype or torch.float32}); "
            f"{job.total_steps} steps x {job.sequences_per_step} seqs (batch {B} x accum {accum}); "
            + (f"resuming at step {start}" if start else "from scratch"),
            flush=True,
        )

    def validate(step: int) -> dict[str, float]:
        res = evaluate_loss(train_model, job.make_val(B, d), token_bytes, device, dtype)
        entry = {"step": step, "val/loss": res["loss"], "val/bpb": res["bpb"]}
        log.log(entry)
        return entry

    from tqdm import tqdm

    bar = tqdm(
        total=job.total_steps,
        initial=start,
        desc=job.stage,
        disable=not d.is_main,
        dynamic_ncols=True,
        mininterval=1.0,
    )
    last_val: dict[str, float] = {}
    t_train, tokens_done = 0.0, 0
    loss_ema = None
    for step in range(start, job.total_steps):
        if cfg.get("eval_every") and step % cfg["eval_every"] == 0:
            last_val = validate(step)
        if d.is_main and cfg.get("sample_every") and step and step % cfg["sample_every"] == 0 and job.sample_prompts:
            log.log(
                {
                    "step": step,
                    "samples": sample(model, job.tokenizer, job.sample_prompts, job.sample_tokens, device, dtype),
                }
            )
        mult = lr_multiplier(step, job.total_steps, cfg["warmup_ratio"], cfg["warmdown_ratio"], cfg["final_lr_frac"])
        for opt in opts:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * mult
                if "nesterov" in group:  # a Muon group
                    group["momentum"] = muon_momentum(step)
        t0 = time.perf_counter()
        batches = [next(loader) for _ in range(accum)]
        # Normalise by the step's target count over all ranks (not per micro-batch), so masked
        # batches weigh every learned token equally and any process/micro-batch split is the same
        # step. DDP averages gradients over ranks, hence the world-size factor.
        count = all_reduce_sum(torch.tensor([float(sum(int((y >= 0).sum()) for _, y in batches))], device=device))
        step_tokens = int(count.item())
        scale = d.world_size / max(step_tokens, 1)
        loss_sum = 0.0
        for micro, (x, y) in enumerate(batches):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            sync = contextlib.nullcontext() if (d.world_size == 1 or micro == accum - 1) else train_model.no_sync()
            with sync, autocast_context(device, dtype):
                loss = train_model(x, y, loss_reduction="sum")
                (loss * scale).backward()
            loss_sum += loss.item()
        if cfg.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        for opt in opts:
            opt.step()
        train_model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if step > start:  # the first step pays for warm-up (allocation, compile)
            t_train += dt
            tokens_done += step_tokens
        train_loss = all_reduce_mean(loss_sum * scale, device)
        loss_ema = train_loss if loss_ema is None else 0.9 * loss_ema + 0.1 * train_loss
        tok_s = step_tokens / dt
        mfu = tok_s * flops_per_token / peak
        log.log(
            {
                "step": step,
                "train/loss": train_loss,
                "lr_mult": mult,
                "tok_per_s": tok_s,
                "mfu": mfu,
                "dt": dt,
            }
        )
        bar.set_postfix(
            loss=f"{loss_ema:.3f}",
            tok_s=f"{tok_s:,.0f}",
            mfu=f"{100 * mfu:.1f}%",
            **({"val_bpb": f"{last_val['val/bpb']:.3f}"} if last_val else {}),
        )
        bar.update(1)
        done = step + 1
        if cfg.get("ckpt_every") and done % cfg["ckpt_every"] == 0 and done < job.total_steps:
            save_step_checkpoint(ckpt, done, model, opts, loader, d)
    bar.close()
    final_val = validate(job.total_steps)
    samples = (
        sample(model, job.tokenizer, job.sample_prompts, job.sample_tokens, device, dtype)
        if d.is_main and job.sample_prompts
        else []
    )
    loader.close()
    train_losses = [e["train/loss"] for e in log.history if "train/loss" in e]
    metrics = {
        "stage": job.stage,
        "steps": job.total_steps,
        "params": unwrap(model).num_params(),
        "device": f"{d.world_size}x{device.type}",
        "dtype": str(dtype or torch.float32),
        "train/loss_first": train_losses[0] if train_losses else None,
        "train/loss_last": train_losses[-1] if train_losses else None,
        "val/loss": final_val["val/loss"],
        "val/bpb": final_val["val/bpb"],
        "val/bpb_first": next((e["val/bpb"] for e in log.history if "val/bpb" in e), None),
        "tok_per_s": tokens_done / t_train if t_train else None,
        "mfu": (tokens_done / t_train) * flops_per_token / peak if t_train else None,
        "train_time_s": t_train,
        "samples": samples,
        **job.meta,
    }
    if d.is_main:
        save_model(
            out / "model.pt",
            model,
            {"stage": job.stage, "step": job.total_steps, "val/bpb": final_val["val/bpb"], **job.meta},
        )
    return metrics


def save_step_checkpoint(ckpt: Checkpointer, step: int, model: torch.nn.Module, opts, loader, d: Dist) -> None:
    """Gather every rank's RNG (and loader, if any) state; rank 0 writes them with model and optimizers."""
    local = {"rng": rng_state(), **({"loader": loader.state_dict()} if loader is not None else {})}
    gathered = [None] * d.world_size
    if torch_dist.is_initialized():
        torch_dist.all_gather_object(gathered, local)
    else:
        gathered = [local]
    if d.is_main:
        state = {"model": unwrap(model).state_dict(), "optimizers": [opt.state_dict() for opt in opts]}
        state.update({key: [g[key] for g in gathered] for key in local})
        ckpt.save(step, state)
    if torch_dist.is_initialized():
        torch_dist.barrier()
