"""The one training harness: pretrain, midtrain, sft and rl all run on `Trainer.fit`.

The harness owns what every trained stage shares, in this order: move the model to this rank's
device and pick the precision; build Muon + AdamW at `lr_frac` of the base learning rates; resume
from the newest valid step checkpoint (model, optimizers, every rank's RNG and loader state);
then each step: evaluate every `eval_every` steps, set the scheduled LRs, run the recipe's step
(forward + backward), clip, step the optimizers, log to metrics.jsonl and the progress bar, and
write a step checkpoint every `ckpt_every` steps or when a time-limit signal (SIGUSR1, SIGTERM)
arrives, after which it exits non-zero so a rerun resumes. At the end: a last evaluation, then
model.pt (rank 0), the only declared output it writes, so Snakemake never sees a half stage.

A stage supplies a `Recipe`: what differs between next-token training (llmstack.train) and
policy-gradient RL (llmstack.rl).
"""

from __future__ import annotations

import json
import signal
import statistics
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist

from llmstack.artifacts import git_commit
from llmstack.checkpoint import Checkpointer, rng_state, save_model, set_rng_state, unwrap
from llmstack.cluster import STOP_SIGNAL
from llmstack.config import LoopConfig
from llmstack.device import autocast_dtype, peak_flops, synchronize
from llmstack.distributed import Dist, all_reduce_sum
from llmstack.loggers import Sinks, Tracking
from llmstack.model import GPT
from llmstack.optim import Muon, build_optimizers, muon_momentum

BASE_LRS = ("matrix_lr", "embedding_lr", "unembedding_lr")  # what model.pt records for later stages
STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM, STOP_SIGNAL)  # `kill`, preemption, Slurm's --signal (cluster.py)
EXIT_STOPPED = 75  # EX_TEMPFAIL: stopped on a signal with a fresh step checkpoint; rerun to resume


class Recipe(ABC):
    """What a stage supplies to the harness: `train_step` and `evaluate`; the rest is optional."""

    momentum_warmup = False  # ramp Muon's momentum over the first steps (pretraining-style runs)

    def setup(self, t: Trainer) -> None:  # noqa: B027 (an optional hook)
        """Build loaders, wrappers (DDP, compile)...; called after the model, optimizers and resume."""

    def state_dict(self) -> dict[str, Any] | None:
        """This rank's state to put in step checkpoints (a loader position), or None."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 (an optional hook)
        pass

    def lr_multiplier(self, step: int, total: int) -> float:
        return 1.0

    def before_step(self, step: int) -> dict[str, Any] | None:
        """Untimed work before a step (e.g. samples); returns a log entry or None."""
        return None

    @abstractmethod
    def train_step(self, step: int) -> dict[str, Any]:
        """Forward and backward of one optimizer step, gradients reduced over ranks. Returns the
        log entry; a `tokens` field (tokens processed, all ranks) feeds throughput and MFU."""

    @abstractmethod
    def evaluate(self, step: int) -> dict[str, Any]:
        """A log entry of held-out metrics at `step` (the model is the training model)."""

    def progress(self, entry: dict[str, Any], last_eval: dict[str, Any]) -> dict[str, str]:
        return {}

    def summary(self, history: list[dict[str, Any]], final_eval: dict[str, Any]) -> dict[str, Any]:
        """Stage-specific fields of metrics.json from the run's log history and last evaluation."""
        return {}


@dataclass
class TrainSpec:
    """What a stage hands the harness besides its recipe."""

    stage: str
    out_dir: Path
    loop: LoopConfig  # seed, precision, eval/ckpt cadence, device... (the stage's own section)
    model: GPT  # built (pretrain, seeded) or loaded (later stages), on the CPU
    total_steps: int
    base_lrs: dict[str, float]  # matrix_lr, embedding_lr, unembedding_lr before lr_frac
    lr_frac: float = 1.0
    weight_decay: float = 0.0
    grad_clip: float = 0.0  # 0: no clipping
    fingerprint: str = ""  # of the input files; step checkpoints from other inputs are not resumed
    meta: dict[str, Any] = field(default_factory=dict)  # extra fields for model.pt and metrics.json
    stop_at: int | None = None  # return None after this step's checkpoint (tests, time slices)
    tracking: Tracking | None = None  # W&B / TensorBoard (llmstack.loggers); an execution setting


class MetricsLog:
    """metrics.jsonl of a stage run (rank 0 writes); on resume, entries past the resumed step go.
    Every entry passes `log`, so the trackers (`sinks`) get exactly what the file gets: the kept
    entries are replayed to them first."""

    def __init__(self, path: Path, enabled: bool, resume_step: int, sinks: Sinks | None = None):
        self.path, self.enabled = path, enabled
        self.sinks = sinks or Sinks(None)
        self.history: list[dict] = []
        if enabled and path.exists():
            kept = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            self.history = [e for e in kept if e.get("step", 0) < resume_step]
            path.write_text("".join(json.dumps(e) + "\n" for e in self.history))
        for entry in self.history:
            self.sinks.log(entry)

    def log(self, entry: dict) -> None:
        if self.enabled:
            self.history.append(entry)
            with open(self.path, "a") as f:
                f.write(json.dumps(entry) + "\n")
            self.sinks.log(entry)

    def close(self, failed: bool = False) -> None:
        self.sinks.close(failed)


def make_optimizers(model: torch.nn.Module, spec: TrainSpec, dtype: torch.dtype | None) -> list[torch.optim.Optimizer]:
    """Muon + AdamW at `lr_frac` of the base LRs; in an fp32 run (dtype None) Muon orthogonalises in fp32."""
    opts = build_optimizers(
        model, **{k: spec.base_lrs[k] * spec.lr_frac for k in BASE_LRS}, weight_decay=spec.weight_decay
    )
    if dtype is None:
        for opt in opts:
            if isinstance(opt, Muon):
                opt.ns_dtype = torch.float32
    return opts


class StopFlag:
    """Set by a time-limit signal; checked once per step by every rank together."""

    def __init__(self) -> None:
        self.raised: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        self.raised = signum

    def any_rank(self, device: torch.device) -> bool:
        flag = torch.tensor([1.0 if self.raised else 0.0], device=device)
        return bool(all_reduce_sum(flag).item())


class Trainer:
    def __init__(self, spec: TrainSpec, recipe: Recipe, d: Dist) -> None:
        self.spec, self.recipe, self.d = spec, recipe, d
        spec.out_dir.mkdir(parents=True, exist_ok=True)
        self.device = d.device
        self.dtype = autocast_dtype(d.device, spec.loop.precision)
        self.model = spec.model.to(d.device)
        self.model.train()
        self.opts = make_optimizers(self.model, spec, self.dtype)
        self.ckpt = Checkpointer(spec.out_dir / "ckpt", keep=spec.loop.keep_ckpts, fingerprint=spec.fingerprint)
        self.start = 0
        self.log: MetricsLog | None = None
        self.flops_per_token = unwrap(self.model).flops_per_token()
        self.peak = peak_flops(d.device, self.dtype or torch.float32) * d.world_size

    def print(self, message: str) -> None:
        if self.d.is_main:
            print(f"[{self.spec.stage}] {message}", flush=True)

    # ----------------------------------------------------------------------- checkpoints

    def resume(self) -> dict[str, Any] | None:
        state = self.ckpt.load_latest()
        if state is None:
            return None
        self.model.load_state_dict(state["model"])
        for opt, opt_state in zip(self.opts, state["optimizers"], strict=True):
            opt.load_state_dict(opt_state)
        self.start = state["step"]
        if "loader" in state and len(state["loader"]) != self.d.world_size:
            raise RuntimeError(
                f"{self.ckpt.folder} was written by {len(state['loader'])} processes, this run has "
                f"{self.d.world_size}: resume with the same count, or delete the folder to restart"
            )
        return state

    def restore_rank_state(self, state: dict[str, Any]) -> None:
        if "loader" in state:
            self.recipe.load_state_dict(state["loader"][self.d.rank])
        if len(state["rng"]) == self.d.world_size:
            set_rng_state(state["rng"][self.d.rank])

    def save_checkpoint(self, step: int) -> None:
        """Gather every rank's RNG (and loader) state; rank 0 writes them with model and optimizers."""
        own = self.recipe.state_dict()
        local = {"rng": rng_state(), **({"loader": own} if own is not None else {})}
        gathered: list[Any] = [local]
        if torch_dist.is_initialized():
            gathered = [None] * self.d.world_size
            torch_dist.all_gather_object(gathered, local)
        if self.d.is_main:
            state = {"model": unwrap(self.model).state_dict(), "optimizers": [o.state_dict() for o in self.opts]}
            state.update({key: [g[key] for g in gathered] for key in local})
            self.ckpt.save(step, state)
        if torch_dist.is_initialized():
            torch_dist.barrier()

    # ------------------------------------------------------------------------------ loop

    def set_lrs(self, step: int) -> float:
        mult = self.recipe.lr_multiplier(step, self.spec.total_steps)
        for opt in self.opts:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * mult
                if self.recipe.momentum_warmup and "nesterov" in group:  # a Muon group
                    group["momentum"] = muon_momentum(step)
        return mult

    def optimizer_step(self) -> None:
        if self.spec.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.grad_clip)
        for opt in self.opts:
            opt.step()
        self.model.zero_grad(set_to_none=True)
        synchronize(self.device)

    def fit(self) -> dict[str, Any] | None:
        """Train to `total_steps`; returns metrics.json's content, or None when stopped at `stop_at`."""
        spec, recipe, d = self.spec, self.recipe, self.d
        state = self.resume()
        recipe.setup(self)
        if state is not None:
            self.restore_rank_state(state)
        sinks = Sinks(spec.tracking if d.is_main else None)  # only rank 0 reports
        self.log = MetricsLog(spec.out_dir / "metrics.jsonl", d.is_main, self.start, sinks)
        self.print(
            f"{unwrap(self.model).num_params():,} params on {d.world_size}x{self.device.type} "
            f"({self.dtype or torch.float32}); {spec.total_steps} steps; "
            + (f"resuming at step {self.start}" if self.start else "from scratch")
        )
        if self.start:  # a visible mark in the log, which keeps the earlier attempt's lines above it
            self.print(f"==== resumed at step {self.start} from {self.ckpt.folder} ====")
        stop = StopFlag()
        stop.install()
        failed = True  # until the loop returns: a time-limit stop (SystemExit 75) or a crash
        try:
            result = self._loop(stop)
            failed = False
            return result
        finally:
            stop.uninstall()
            self.log.close(failed)  # loggers flush and close on every way out

    def _loop(self, stop: StopFlag) -> dict[str, Any] | None:
        spec, loop, recipe, d = self.spec, self.spec.loop, self.recipe, self.d
        from tqdm import tqdm

        bar = tqdm(total=spec.total_steps, initial=self.start, desc=spec.stage, disable=not d.is_main,
                   dynamic_ncols=True, mininterval=1.0)  # fmt: skip
        last_eval: dict[str, Any] = {}
        rates: list[float] = []  # tokens/s of each step after the first (warm-up) one
        self.train_time = 0.0
        for step in range(self.start, spec.total_steps):
            if step == 0 or (loop.eval_every and step % loop.eval_every == 0):
                last_eval = recipe.evaluate(step)
                self.log.log(last_eval)
            if (extra := recipe.before_step(step)) is not None:
                self.log.log(extra)
            mult = self.set_lrs(step)
            t0 = time.perf_counter()
            entry = recipe.train_step(step)
            self.optimizer_step()
            dt = time.perf_counter() - t0
            self.train_time += dt
            entry = {"step": step, **entry, "lr_mult": mult, "dt": dt}
            tokens = entry.pop("tokens", None)
            if tokens is not None:
                entry["tok_per_s"] = tokens / dt
                entry["mfu"] = entry["tok_per_s"] * self.flops_per_token / self.peak
                if step > self.start:  # the first step pays for warm-up (allocation, compile)
                    rates.append(entry["tok_per_s"])
            self.log.log(entry)
            bar.set_postfix(**recipe.progress(entry, last_eval))
            bar.update(1)
            done = step + 1
            if done < spec.total_steps:
                stopping = stop.any_rank(self.device) if d.world_size > 1 else stop.raised is not None
                at_stop = spec.stop_at is not None and done >= spec.stop_at
                if stopping or at_stop or (loop.ckpt_every and done % loop.ckpt_every == 0):
                    self.save_checkpoint(done)
                if stopping:
                    bar.close()
                    self.print(f"stopped by a signal after step {done}; checkpoint saved, rerun to resume")
                    raise SystemExit(EXIT_STOPPED)
                if at_stop:
                    bar.close()
                    return None
        bar.close()
        final_eval = recipe.evaluate(spec.total_steps)
        self.log.log(final_eval)
        return self.finish(final_eval, rates)

    def finish(self, final_eval: dict[str, Any], rates: list[float]) -> dict[str, Any]:
        spec, d = self.spec, self.d
        tok_s = statistics.median(rates) if rates else None
        metrics = {
            "stage": spec.stage,
            "steps": spec.total_steps,
            "params": unwrap(self.model).num_params(),
            "device": f"{d.world_size}x{self.device.type}",
            "dtype": str(self.dtype or torch.float32),
            "tok_per_s": tok_s,
            "mfu": tok_s * self.flops_per_token / self.peak if tok_s else None,
            "train_time_s": self.train_time,
            **self.recipe.summary(self.log.history, final_eval),
            **spec.meta,
        }
        if d.is_main:
            recorded = {k: v for k, v in metrics.items() if isinstance(v, int | float | str) or v is None}
            meta = {**recorded, "step": spec.total_steps, "base_lrs": spec.base_lrs, "git": git_commit()}
            save_model(spec.out_dir / "model.pt", self.model, meta)
        return metrics
