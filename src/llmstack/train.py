"""Next-token training on the harness: pretrain, midtrain and sft (different data, same step).

`LMRecipe` is what these stages hand llmstack.harness: per step, accumulate gradients over
micro-batches to the configured total batch (DDP across ranks), each learned token weighing the
same; validate with loss and bits per byte; sample from fixed prompts now and then. Also the
helpers base_eval shares: `evaluate_loss`, `token_byte_lengths`, `sample`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as torch_dist
from torch.nn.parallel import DistributedDataParallel as DDP

from llmstack.checkpoint import unwrap
from llmstack.config import TrainConfig
from llmstack.device import autocast_context
from llmstack.distributed import Dist, all_reduce_mean, all_reduce_sum
from llmstack.harness import Recipe, Trainer
from llmstack.model import GPT
from llmstack.optim import lr_multiplier
from llmstack.tokenizer import Tokenizer

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]


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


def pick_device_batch(want: int | None, per_rank: int, model: torch.nn.Module, d: Dist, dtype) -> int:
    """Sequences per forward: the configured size, else (CUDA) the largest power of two that fits
    in memory, else 8 on CPU; always a divisor of the sequences each rank needs per step."""
    if not want:
        seq_len = unwrap(model).config.seq_len
        want = find_fitting_batch(model, per_rank, seq_len, d.device, dtype) if d.device.type == "cuda" else 8
    want = max(1, min(want, per_rank))
    while per_rank % want:
        want -= 1
    return want


class LMRecipe(Recipe):
    """Next-token loss over `sequences_per_step` rows of seq_len per optimizer step.

    make_loader(B, d) -> a stateful iterator of (inputs, targets) batches for this rank;
    make_val(B, d) -> a fresh, fixed validation iterator. Targets of -1 are not learned."""

    momentum_warmup = True

    def __init__(
        self,
        cfg: TrainConfig,
        tokenizer: Tokenizer,
        make_loader: Callable[[int, Dist], Any],
        make_val: Callable[[int, Dist], Batches],
        sequences_per_step: int,
        sample_prompts: list[str] | None = None,
        sample_every: int = 0,
        sample_tokens: int = 48,
    ) -> None:
        self.cfg, self.tok = cfg, tokenizer
        self.make_loader, self.make_val = make_loader, make_val
        self.sequences_per_step = sequences_per_step
        self.sample_prompts, self.sample_every, self.sample_tokens = sample_prompts or [], sample_every, sample_tokens
        self.loss_ema: float | None = None
        self.samples: list[str] = []

    def setup(self, t: Trainer) -> None:
        self.t, d = t, t.d
        model: torch.nn.Module = t.model
        if self.cfg.compile:
            # A machine without a working compiler toolchain falls back to eager instead of failing.
            torch._dynamo.config.suppress_errors = True
            model = torch.compile(model)
        if d.world_size > 1:
            model = DDP(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
        self.train_model = model
        per_rank = max(1, self.sequences_per_step // d.world_size)
        self.B = pick_device_batch(self.cfg.device_batch_size, per_rank, model, d, t.dtype)
        self.accum = self.sequences_per_step // (self.B * d.world_size)
        if self.accum < 1 or self.sequences_per_step % (self.B * d.world_size):
            raise ValueError(
                f"{t.spec.stage}: {self.sequences_per_step} sequences per step do not split into "
                f"{d.world_size} processes x batch {self.B}"
            )
        self.loader = self.make_loader(self.B, d)
        self.token_bytes = token_byte_lengths(self.tok)
        t.print(f"{self.sequences_per_step} sequences per step (batch {self.B} x accum {self.accum} x {d.world_size})")

    def state_dict(self) -> dict[str, Any]:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loader.load_state_dict(state)

    def lr_multiplier(self, step: int, total: int) -> float:
        c = self.cfg
        return lr_multiplier(step, total, c.warmup_ratio, c.warmdown_ratio, c.final_lr_frac)

    def evaluate(self, step: int) -> dict[str, Any]:
        t = self.t
        res = evaluate_loss(self.train_model, self.make_val(self.B, t.d), self.token_bytes, t.device, t.dtype)
        return {"step": step, "val/loss": res["loss"], "val/bpb": res["bpb"]}

    def generate_samples(self) -> list[str]:
        t = self.t
        return sample(t.model, self.tok, self.sample_prompts, self.sample_tokens, t.device, t.dtype)

    def before_step(self, step: int) -> dict[str, Any] | None:
        if self.t.d.is_main and self.sample_prompts and self.sample_every and step and step % self.sample_every == 0:
            return {"step": step, "samples": self.generate_samples()}
        return None

    def train_step(self, step: int) -> dict[str, Any]:
        t, d = self.t, self.t.d
        batches = [next(self.loader) for _ in range(self.accum)]
        # Normalise by the step's target count over all ranks (not per micro-batch), so masked
        # batches weigh every learned token equally and any process/micro-batch split is the same
        # step. DDP averages gradients over ranks, hence the world-size factor.
        count = all_reduce_sum(torch.tensor([float(sum(int((y >= 0).sum()) for _, y in batches))], device=t.device))
        step_tokens = int(count.item())
        scale = d.world_size / max(step_tokens, 1)
        loss_sum = 0.0
        for micro, (x, y) in enumerate(batches):
            x, y = x.to(t.device, non_blocking=True), y.to(t.device, non_blocking=True)
            last = d.world_size == 1 or micro == self.accum - 1
            with contextlib.nullcontext() if last else self.train_model.no_sync(), autocast_context(t.device, t.dtype):
                loss = self.train_model(x, y, loss_reduction="sum")
                (loss * scale).backward()
            loss_sum += loss.item()
        train_loss = all_reduce_mean(loss_sum * scale, t.device)
        self.loss_ema = train_loss if self.loss_ema is None else 0.9 * self.loss_ema + 0.1 * train_loss
        return {"train/loss": train_loss, "tokens": step_tokens}

    def progress(self, entry: dict[str, Any], last_eval: dict[str, Any]) -> dict[str, str]:
        out = {
            "loss": f"{self.loss_ema:.3f}",
            "tok_s": f"{entry['tok_per_s']:,.0f}",
            "mfu": f"{100 * entry['mfu']:.1f}%",
        }
        if "val/bpb" in last_eval:
            out["val_bpb"] = f"{last_eval['val/bpb']:.3f}"
        return out

    def summary(self, history: list[dict[str, Any]], final_eval: dict[str, Any]) -> dict[str, Any]:
        if self.t.d.is_main and self.sample_prompts:
            self.samples = self.generate_samples()
        self.loader.close()
        losses = [e["train/loss"] for e in history if "train/loss" in e]
        return {
            "train/loss_first": losses[0] if losses else None,
            "train/loss_last": losses[-1] if losses else None,
            "val/loss": final_eval["val/loss"],
            "val/bpb": final_eval["val/bpb"],
            "val/bpb_first": next((e["val/bpb"] for e in history if "val/bpb" in e), None),
            "samples": self.samples,
        }
