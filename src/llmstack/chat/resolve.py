"""Which model a chat loads: a run's trained stages, found through its manifest, or files named directly.

    choices, default = resolve_models(Path("."))              # newest runs/*/run.json
    choices, default = resolve_models(Path("."), run="tiny", stage="sft")
    choices, default = resolve_models(model="m.pt", tokenizer="tokenizer.model")
    pool = EnginePool(choices)
    engine = pool.get(default)                                # loaded once, then shared

`runs/<run>/run.json` (written by the workflow) maps stage names to their folders
`artifacts/<stage>/<key>`, relative to the project folder; a chat model is that folder's `model.pt`
and the tokenizer is the run's tokenizer folder's `tokenizer.model`. The default stage is the most
trained one that exists, in the stage table's order from the end (llmstack.pipeline.CHAT_STAGES).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmstack.pipeline import CHAT_STAGES

# chat-facing label -> stage name in run.json, most trained first (the default order)
STAGES = {s.chat_label: s.name for s in CHAT_STAGES}
TRAIN_HINT = "train it with `snakemake --cores all` from the project folder"


class ResolveError(ValueError):
    """No usable model; the message is one line that names the fix."""


@dataclass(frozen=True)
class ModelChoice:
    label: str  # stage label (rl, sft, midtrain, base), or "model" for a file named directly
    model_path: Path
    tokenizer_path: Path
    run: str | None = None


def find_manifest(root: Path, run: str | None = None) -> tuple[str, dict]:
    """(run name, its run.json contents): the named run, else the newest one under root/runs."""
    runs_dir = root / "runs"
    if run is not None:
        path = runs_dir / run / "run.json"
        if not path.is_file():
            known = sorted(p.parent.name for p in runs_dir.glob("*/run.json"))
            hint = f"known runs: {', '.join(known)}" if known else TRAIN_HINT
            raise ResolveError(f"run {run!r} not found ({path} is missing); {hint}")
    else:
        found = sorted(runs_dir.glob("*/run.json"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise ResolveError(f"no trained run in {root.resolve()} (no runs/*/run.json); {TRAIN_HINT}")
        path = found[-1]
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest.get("stages"), dict):
            raise ValueError("no 'stages' mapping")
    except (OSError, ValueError) as err:
        raise ResolveError(f"unreadable run manifest {path}: {err}") from None
    return path.parent.name, manifest


def run_models(root: Path, run: str, manifest: dict) -> dict[str, ModelChoice]:
    """The run's stages that have a model file, by label, most trained first."""
    stages = manifest["stages"]
    if "tokenizer" not in stages:
        raise ResolveError(f"run {run!r} has no tokenizer stage in its run.json")
    tokenizer = root / stages["tokenizer"] / "tokenizer.model"
    choices = {}
    for label, stage in STAGES.items():
        if stage in stages and (root / stages[stage] / "model.pt").is_file():
            choices[label] = ModelChoice(label, root / stages[stage] / "model.pt", tokenizer, run)
    if choices and not tokenizer.is_file():
        raise ResolveError(f"run {run!r} has models but its tokenizer {tokenizer} is missing; {TRAIN_HINT}")
    return choices


def resolve_models(
    root: Path | str = ".",
    run: str | None = None,
    stage: str | None = None,
    model: Path | str | None = None,
    tokenizer: Path | str | None = None,
) -> tuple[dict[str, ModelChoice], str]:
    """(every model the chat may switch between, by label; the label to start with)."""
    if model is not None or tokenizer is not None:
        if model is None or tokenizer is None:
            raise ResolveError("--model and --tokenizer go together: give both files")
        for kind, path in (("model", Path(model)), ("tokenizer", Path(tokenizer))):
            if not path.is_file():
                raise ResolveError(f"{kind} file not found: {path}")
        return {"model": ModelChoice("model", Path(model), Path(tokenizer))}, "model"
    stage = next((label for label, name in STAGES.items() if name == stage), stage)  # a stage name for its label
    if stage is not None and stage not in STAGES:
        raise ResolveError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    root = Path(root)
    run_name, manifest = find_manifest(root, run)
    choices = run_models(root, run_name, manifest)
    if stage is not None:
        if stage not in choices:
            where = manifest["stages"].get(STAGES[stage], f"artifacts/{STAGES[stage]}/...")
            raise ResolveError(f"run {run_name!r} has no {stage} model yet ({where}/model.pt); {TRAIN_HINT}")
        return choices, stage
    if not choices:
        raise ResolveError(f"run {run_name!r} has no trained model yet (none of {', '.join(STAGES)}); {TRAIN_HINT}")
    return choices, next(iter(choices))


class EnginePool:
    """Engines by label, each loaded from its ModelChoice on first use and then shared (engines
    hold no per-request state, so concurrent chats can use one). An Engine given in place of a
    ModelChoice is served as is (a model already in memory)."""

    def __init__(self, models: dict[str, ModelChoice | Any], device: str = "auto", precision: str = "auto") -> None:
        if not models:
            raise ResolveError("no model to serve")
        self.models = dict(models)
        self.device = device
        self.precision = precision
        self._engines = {k: v for k, v in self.models.items() if not isinstance(v, ModelChoice)}
        self._lock = threading.Lock()

    @property
    def labels(self) -> list[str]:
        return list(self.models)

    def get(self, label: str):
        """The Engine of `label` (llmstack.engine.Engine), loading it on first use."""
        if label not in self.models:
            raise ResolveError(f"unknown model {label!r}; available: {', '.join(self.models)}")
        with self._lock:  # one load per model even when two chats ask at once
            if label not in self._engines:
                self._engines[label] = load_engine(self.models[label], self.device, self.precision)
            return self._engines[label]


def load_engine(choice: ModelChoice, device: str = "auto", precision: str = "auto"):
    """An Engine for one model file and its tokenizer on `device` ("auto": CUDA when present)."""
    from llmstack.checkpoint import load_model
    from llmstack.device import pick_device
    from llmstack.engine import Engine
    from llmstack.tokenizer import Tokenizer

    tokenizer = Tokenizer.load(choice.tokenizer_path)
    torch_device = pick_device(device)
    try:
        model, _ = load_model(choice.model_path, torch_device)
    except (OSError, RuntimeError, KeyError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ResolveError(f"cannot load model {choice.model_path}: {first}") from None
    return Engine(model, tokenizer, precision=precision)
