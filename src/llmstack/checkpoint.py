"""Model files and step checkpoints.

A model file (`model.pt`, a stage's declared output) describes itself:
    {"model": state_dict, "model_config": GPTConfig fields, "meta": {stage, step, metrics, git...}}
so `load_model(path)` rebuilds the GPT with no other input.

Step checkpoints (`<stage dir>/ckpt/step_000100.pt`) hold everything a run needs to continue
bit-identically: model, optimizers, data-loader state, every RNG, the step. They are written to a
temp name and renamed, the newest `keep` are kept, and on start the newest one that loads is used:
a truncated or corrupt newest checkpoint is skipped with a warning. Once the stage has written all
its outputs, `prune_steps` drops the ones resume will never need.
"""

from __future__ import annotations

import random
import re
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from llmstack.artifacts import atomic_path
from llmstack.model import GPT, GPTConfig

STEP_FILE = re.compile(r"step_(\d+)\.pt$")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DDP and torch.compile wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def save_model(path: Path | str, model: torch.nn.Module, meta: dict[str, Any]) -> None:
    model = unwrap(model)
    payload = {"model": model.state_dict(), "model_config": asdict(model.config), "meta": meta}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_model(path: Path | str, device: torch.device | str = "cpu") -> tuple[GPT, dict[str, Any]]:
    """(model in eval mode on `device`, its meta) from a model file."""
    payload = torch.load(path, map_location=device, weights_only=True)
    model = GPT(GPTConfig(**payload["model_config"]))
    model.load_state_dict(payload["model"])
    return model.to(device).eval(), payload["meta"]


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    """Step checkpoints of one stage run in `folder`."""

    def __init__(self, folder: Path | str, keep: int = 2, fingerprint: str = ""):
        self.folder = Path(folder)
        self.keep = max(1, keep)
        # Identifies the stage's input files: checkpoints made from other inputs (an upstream stage
        # rerun with different results) must never be resumed.
        self.fingerprint = fingerprint

    def steps(self) -> list[tuple[int, Path]]:
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := STEP_FILE.search(p.name))]
        return sorted(found)

    def save(self, step: int, state: dict[str, Any]) -> Path:
        path = self.folder / f"step_{step:06d}.pt"
        with atomic_path(path) as tmp:
            torch.save({"step": step, "fingerprint": self.fingerprint, **state}, tmp)
        for _, old in self.steps()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def load_latest(self) -> dict[str, Any] | None:
        """The newest checkpoint that loads, or None; unreadable ones are skipped with a warning."""
        for step, path in reversed(self.steps()):
            try:
                # weights_only=False: the file holds RNG states and loader state, and we wrote it.
                state = torch.load(path, map_location="cpu", weights_only=False)
                if state.get("step") != step:
                    raise ValueError(f"step field {state.get('step')} != file name step {step}")
            except Exception as err:  # truncated zip, bad pickle, wrong content
                warnings.warn(f"skipping unreadable checkpoint {path}: {type(err).__name__}: {err}", stacklevel=2)
                continue
            if state.get("fingerprint", "") != self.fingerprint:
                warnings.warn(
                    f"checkpoints in {self.folder} were made from other input files; starting fresh", stacklevel=2
                )
                for _, stale in self.steps():
                    stale.unlink(missing_ok=True)
                return None
            return state
        return None


def prune_steps(folder: Path | str, keep: int) -> None:
    """Delete all but the newest `keep` step checkpoints in `folder`, and the folder itself once empty."""
    folder = Path(folder)
    steps = Checkpointer(folder).steps()
    for _, path in steps[: max(0, len(steps) - max(0, keep))]:
        path.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:  # kept checkpoints, or files that are not ours
        pass
