"""The report card: one run's stage results gathered into runs/<run>/report.md with PNG curves.

    python -m llmstack.launch report runs/<run>                                  # the `report` rule
    python -m llmstack.launch sweep_report runs/<sweep>/sweep.md runs/<a> runs/<b>  # `sweep_report`
    llmstack report [--run R]                                                    # regenerate later

`runs/<run>/run.json` names the run's stage folders (`{"run", "stages": {name: "artifacts/<stage>/
<key>"}}`, relative to the project folder, i.e. the run folder's grandparent). Each stage folder holds
config.yaml, a log that opens with provenance and ends with "done in", and its result file. Every
one of those is optional here, so a half-finished run still renders, with "—" where a stage has not
run yet.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from llmstack.stages.common import atomic_path, git_commit

DASH = "—"
STAGE_ORDER = tuple("data tokenizer pretrain base_eval midtrain eval/midtrain sft eval/sft rl eval/rl".split())
CHAT_MODELS = ("midtrain", "sft", "rl")
TRAINED = ("pretrain", "midtrain", "sft", "rl")
RESULT_FILES = dict(data="manifest.json", tokenizer="tokenizer.json", base_eval="eval.json", eval="eval.json")
CPU_ONLY = {"data", "tokenizer"}  # stages that never touch an accelerator
LOSS_PNG, REWARD_PNG, SWEEP_PNG = "loss_curves.png", "reward_curves.png", "sweep.png"
REWARD_KEY = "rl/reward"  # metrics.jsonl names written by llmstack.rl

_PROVENANCE = re.compile(r"\[[\w/]+\] (\{\"llmstack\".*\})\s*$")
_DONE = re.compile(r"\[[\w/]+\] done in ([0-9.]+)s\s*$")
_DEVICE = re.compile(r"^(\d+)x(\w+)")
# Sweep runs are named "<run>-<key>=<value>-<key>=<value>" (config.plan_runs); values may hold "-".
_NAME_OVERRIDE = re.compile(r"(?:^|-)([A-Za-z_]\w*(?:\.\w+)+)=")


# ------------------------------------------------------------------------------------ gathering


@dataclass
class StageResult:
    """What one stage folder says about itself; every field may be missing."""

    name: str  # the run.json key: "pretrain", "eval/sft"
    dir: Path
    result: dict[str, Any] | None = None  # the declared result file (metrics.json, eval.json...)
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl
    config_text: str = ""
    provenance: dict[str, Any] | None = None
    seconds: float | None = None
    seconds_from_mtime: bool = False  # no "done in" line: estimated from file times

    @property
    def stage(self) -> str:
        return self.name.split("/")[0]

    @property
    def config(self) -> dict[str, Any]:
        return (yaml.safe_load(self.config_text) or {}) if self.config_text else {}


@dataclass
class RunResults:
    name: str
    dir: Path
    stages: dict[str, StageResult]  # in pipeline order

    def result(self, name: str) -> dict[str, Any]:
        """A stage's result dict, or {} when the stage is absent or has not finished."""
        st = self.stages.get(name)
        return (st.result or {}) if st else {}


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); rerun its stage") from err


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill mid-write; the rest of the curve is still good
    return out


def read_log(path: Path) -> tuple[dict[str, Any] | None, float | None]:
    """(provenance, seconds) from a stage log: its last provenance line and last "done in" line."""
    if not path.is_file():
        return None, None
    prov, seconds = None, None
    # splitlines also splits on tqdm's carriage returns, so progress bars never hide a line
    for line in path.read_text(errors="replace").splitlines():
        if m := _PROVENANCE.search(line):
            try:
                prov = json.loads(m[1])
            except json.JSONDecodeError:
                pass
        elif m := _DONE.search(line):
            seconds = float(m[1])
    return prov, seconds


def load_stage(name: str, path: Path) -> StageResult:
    stage = name.split("/")[0]
    st = StageResult(name, path)
    result_path = path / RESULT_FILES.get(stage, "metrics.json")
    st.result = _read_json(result_path)
    st.history = _read_jsonl(path / "metrics.jsonl")
    config_path = path / "config.yaml"
    if config_path.is_file():
        st.config_text = config_path.read_text()
    st.provenance, st.seconds = read_log(path / f"{stage}.log")
    if st.seconds is None and st.result is not None and config_path.is_file():
        # config.yaml is written when the stage starts, the result file when it ends
        st.seconds = max(0.0, result_path.stat().st_mtime - config_path.stat().st_mtime)
        st.seconds_from_mtime = True
    return st


def _order(name: str) -> int:
    return STAGE_ORDER.index(name) if name in STAGE_ORDER else len(STAGE_ORDER)


def load_run(run_dir: Path | str) -> RunResults:
    """Read runs/<run>/run.json and every stage folder it names."""
    run_dir = Path(run_dir)
    manifest = _read_json(run_dir / "run.json")
    if manifest is None:
        raise FileNotFoundError(f"{run_dir / 'run.json'} not found: run the workflow first (snakemake --cores all)")
    project = run_dir.resolve().parent.parent  # runs/<run> sits in the project folder
    names = sorted(manifest.get("stages", {}), key=_order)
    stages = {n: load_stage(n, project / manifest["stages"][n]) for n in names}
    return RunResults(str(manifest.get("run", run_dir.name)), run_dir, stages)


# ---------------------------------------------------------------------------- hardware and cost


def prices() -> tuple[float, float, str]:
    """(USD per GPU-hour, USD per CPU machine-hour, where they came from).

    The report rule gets no config slice (prices must not rerun anything), so the prices come from
    configs/report/default.yaml (or the schema defaults), then LLMSTACK_GPU_HOUR_PRICE /
    LLMSTACK_CPU_HOUR_PRICE."""
    from llmstack.config import CONFIG_DIR, ReportConfig

    gpu, cpu = ReportConfig.gpu_hour_price, ReportConfig.cpu_hour_price
    source = "llmstack.config.ReportConfig defaults"
    path = CONFIG_DIR / "report" / "default.yaml"
    if path.is_file():
        values = yaml.safe_load(path.read_text()) or {}
        gpu, cpu = float(values.get("gpu_hour_price", gpu)), float(values.get("cpu_hour_price", cpu))
        source = "configs/report/default.yaml"
    env = {k: os.environ.get(f"LLMSTACK_{k.upper()}") for k in ("gpu_hour_price", "cpu_hour_price")}
    try:
        gpu = float(env["gpu_hour_price"]) if env["gpu_hour_price"] else gpu
        cpu = float(env["cpu_hour_price"]) if env["cpu_hour_price"] else cpu
    except ValueError as err:
        raise ValueError(f"LLMSTACK_GPU_HOUR_PRICE / LLMSTACK_CPU_HOUR_PRICE must be numbers ({err})") from err
    if any(env.values()):
        source += " overridden by LLMSTACK_*_HOUR_PRICE"
    return gpu, cpu, source


def stage_device(run: RunResults, st: StageResult) -> tuple[int, str, bool]:
    """(device count, device type, recorded?) of a stage. Training stages record "NxTYPE";
    evaluation stages do not, so they are assumed to run on one device of the training type."""
    recorded = (st.result or {}).get("device")
    if isinstance(recorded, str) and (m := _DEVICE.match(recorded)):
        return int(m[1]), m[2], True
    if st.stage in CPU_ONLY:
        return 1, "cpu", True
    for name in TRAINED:
        dev = run.result(name).get("device")
        if isinstance(dev, str) and (m := _DEVICE.match(dev)):
            return 1, m[2], False
    return 1, "cpu", False


def stage_cost(count: int, kind: str, seconds: float, gpu_price: float, cpu_price: float) -> float:
    """GPU stages pay per GPU-hour; CPU stages pay per machine-hour (gloo processes share one)."""
    hours = seconds / 3600
    return hours * count * gpu_price if kind == "cuda" else hours * cpu_price


def _command(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return ""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info() -> dict[str, str]:
    """Hardware and software of the machine writing the report (the logs record host + platform)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        mem = DASH
    gpus: dict[str, int] = {}
    for line in _command(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"]).splitlines():
        if line.strip():
            gpus[line.strip()] = gpus.get(line.strip(), 0) + 1
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "not installed"
    return {
        "CPU": f"{cpu} ({os.cpu_count()} logical cores)",
        "memory": mem,
        "GPUs": ", ".join(f"{n} × {name}" for name, n in gpus.items()) or "none found (nvidia-smi)",
        "torch": torch_version,
        "python": platform.python_version(),
        "git commit": git_commit(),
    }


# ----------------------------------------------------------------------------------- formatting


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def fmt(x: Any, spec: str = ".3f") -> str:
    v = _num(x)
    return DASH if v is None else format(v, spec)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    return f"{m}m {s:02d}s" if m < 60 else f"{m // 60}h {m % 60:02d}m"


def money(usd: float) -> str:
    return f"${usd:,.2f}" if usd >= 1 else f"${usd:.4f}"


def table(header: list[str], rows: Iterable[list[str]], text_columns: int = 1) -> list[str]:
    """A markdown table: the first `text_columns` left-aligned, the rest right-aligned (numbers)."""

    def cells(row: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |"

    align = "|" + ":---|" * text_columns + "---:|" * (len(header) - text_columns)
    return [cells(header), align, *(cells(r) for r in rows)]


def fenced(text: str, lang: str = "") -> list[str]:
    """A code block whose fence is longer than any backtick run inside (samples are free text)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + lang, text.rstrip("\n"), fence]


def _atomic_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# ---------------------------------------------------------------------------------------- plots


def series(history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one metric from metrics.jsonl entries that carry it."""
    pairs = [(e["step"], e[key]) for e in history if _num(e.get(key)) is not None and "step" in e]
    return [p[0] for p in pairs], [float(p[1]) for p in pairs]


def smoothing(n: int) -> float:
    """EMA factor for a curve of n points: none up to 20 points, then a window of about n/20 (≤ 20)."""
    return min(0.95, max(0.0, 1 - 20 / max(n, 1)))


def ema(values: list[float], beta: float) -> list[float]:
    """Bias-corrected exponential moving average (starts on the first value instead of at zero)."""
    out, avg = [], 0.0
    for i, v in enumerate(values):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** (i + 1)) if beta else v)
    return out


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)  # Figure.savefig renders with Agg: no display needed


def plot_training(run: RunResults, path: Path) -> bool:
    """Train loss (raw and smoothed) over val bpb, one column per training stage; False if no data."""
    from matplotlib.figure import Figure

    names = [n for n in ("pretrain", "midtrain", "sft") if n in run.stages and run.stages[n].history]
    if not names:
        return False
    fig = Figure(figsize=(4.4 * len(names), 6.0), layout="constrained")
    axes = fig.subplots(2, len(names), squeeze=False, sharex="col")
    for col, name in enumerate(names):
        hist = run.stages[name].history
        steps, loss = series(hist, "train/loss")
        top, bottom = axes[0][col], axes[1][col]
        beta = smoothing(len(loss))
        if beta:
            top.plot(steps, loss, lw=0.6, alpha=0.35, color="C0", label="train loss")
            top.plot(steps, ema(loss, beta), lw=1.6, color="C0", label=f"EMA ({beta:.2f})")
        else:
            top.plot(steps, loss, lw=1.2, color="C0", label="train loss")
        top.set_title(name)
        top.set_ylabel("train loss (nats/token)")
        top.legend(fontsize=8)
        vsteps, bpb = series(hist, "val/bpb")
        bottom.plot(vsteps, bpb, marker="o", color="C1")
        bottom.set_ylabel("val bits per byte")
        bottom.set_xlabel("step")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    _save(fig, path)
    return True


def plot_rl(run: RunResults, path: Path) -> bool:
    """Reward, pass@k and held-out accuracy per step, and mean sampled length; False if no data."""
    from matplotlib.figure import Figure

    hist = run.stages["rl"].history if "rl" in run.stages else []
    present = {k for e in hist for k in e}
    if REWARD_KEY not in present:
        return False
    reward_key = REWARD_KEY
    pass_key = "rl/pass@k" if "rl/pass@k" in present else None
    eval_key = "eval/accuracy" if "eval/accuracy" in present else None
    len_key = "rl/seq_len" if "rl/seq_len" in present else None
    fig = Figure(figsize=(10.0 if len_key else 6.0, 4.0), layout="constrained")
    axes = fig.subplots(1, 2 if len_key else 1, squeeze=False)[0]
    steps, reward = series(hist, reward_key)
    ax = axes[0]
    beta = smoothing(len(reward))
    if beta:
        ax.plot(steps, reward, lw=0.6, alpha=0.35, color="C0")
        ax.plot(steps, ema(reward, beta), lw=1.6, color="C0", label=f"{reward_key} (EMA {beta:.2f})")
    else:
        ax.plot(steps, reward, lw=1.2, color="C0", label=reward_key)
    if pass_key:
        ax.plot(*series(hist, pass_key), lw=1.0, color="C2", label=pass_key)
    if eval_key:
        ax.plot(*series(hist, eval_key), marker="o", color="C3", label=f"{eval_key} (held out)")
    ax.set_xlabel("step")
    ax.set_title("RL reward")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if len_key:
        axes[1].plot(*series(hist, len_key), color="C4")
        axes[1].set_xlabel("step")
        axes[1].set_title(f"{len_key} (tokens)")
        axes[1].grid(alpha=0.3)
    _save(fig, path)
    return True


# ------------------------------------------------------------------------------------- sections


def _distinct(run: RunResults, key: str) -> str:
    """One provenance field across stages: the value, or each value with the stages that had it."""
    seen: dict[str, list[str]] = {}
    for name, st in run.stages.items():
        if st.provenance and key in st.provenance:
            seen.setdefault(str(st.provenance[key]), []).append(name)
    if len(seen) <= 1:
        return next(iter(seen), DASH)
    return "; ".join(f"{v} ({', '.join(names)})" for v, names in seen.items())


def environment_section(run: RunResults) -> list[str]:
    rows = [[f"stages: {k}", _distinct(run, k)] for k in ("llmstack", "git", "python", "host", "platform")]
    rows += [[f"report machine: {k}", v] for k, v in machine_info().items()]
    return [
        "## Environment",
        "",
        *table(["", "value"], rows, text_columns=2),
        "",
        "Stage rows come from each stage log's provenance; hardware rows describe the machine that "
        "wrote this report (the same machine when the workflow runs locally).",
        "",
    ]


def stages_section(run: RunResults) -> list[str]:
    gpu_price, cpu_price, source = prices()
    rows, total_s, total_cost, notes = [], 0.0, 0.0, set()
    for name, st in run.stages.items():
        count, kind, recorded = stage_device(run, st)
        device = f"{count}x{kind}" + ("" if recorded else " †")
        if st.result is None and st.stage not in CPU_ONLY:
            device, recorded = DASH, True  # not run yet: no device to name
        cost = None
        if st.seconds is not None:
            cost = stage_cost(count, kind, st.seconds, gpu_price, cpu_price)
            total_s += st.seconds
            total_cost += cost
        time_s = duration(st.seconds) + (" ≈" if st.seconds_from_mtime else "")
        notes |= {"†"} if not recorded else set()
        notes |= {"≈"} if st.seconds_from_mtime else set()
        started = (st.provenance or {}).get("started", DASH)
        status = "done" if st.result is not None else "not finished"
        rows.append(
            [
                name,
                f"`{st.dir.parent.name}/{st.dir.name}`",
                status,
                started,
                time_s,
                device,
                money(cost) if cost is not None else DASH,
            ]
        )
    rows.append(["**total**", "", "", "", duration(total_s), "", money(total_cost)])
    out = [
        "## Stages",
        "",
        *table(["stage", "folder", "status", "started", "time", "device", "est. cost"], rows, text_columns=4),
        "",
    ]
    out.append(
        f"Cost = hours × ${gpu_price:.2f} per GPU-hour on CUDA, × ${cpu_price:.2f} per machine-hour on "
        f"CPU (prices from {source}). Time is the stage's final attempt, from its log's `done in` line; "
        "stages shared with other runs (cached) count in each run."
    )
    if "†" in notes:
        out.append("† not recorded by the stage; assumed one device of the training stages' type.")
    if "≈" in notes:
        out.append("≈ no `done in` line in the log: time between config.yaml and the result file.")
    return [*out, ""]


def data_section(run: RunResults) -> list[str]:
    data, tok = run.result("data"), run.result("tokenizer")
    out = ["## Data and tokenizer", ""]
    if data:
        source = data.get("source") or {}
        detail = ", ".join(f"{k}={v}" for k, v in source.items() if k != "kind")
        val = data.get("val") or {}
        out.append(f"- source: **{source.get('kind', DASH)}**" + (f" ({detail})" if detail else ""))
        out.append(
            f"- training text: {data.get('rows', 0):,} documents, {data.get('text_bytes', 0) / 1e6:,.1f} MB "
            f"in {len(data.get('shards', []))} shards; validation: {val.get('rows', 0):,} documents, "
            f"{val.get('text_bytes', 0) / 1e6:,.2f} MB"
        )
    else:
        out.append(f"- data: {DASH} (not finished)")
    if tok:
        out.append(
            f"- tokenizer: vocabulary {fmt(tok.get('vocab_size'), ',.0f')}, "
            f"{fmt(tok.get('bytes_per_token'))} bytes/token on the validation text"
        )
    else:
        out.append(f"- tokenizer: {DASH} (not finished)")
    return [*out, ""]


def training_section(run: RunResults, loss_png: bool) -> list[str]:
    rows = []
    for name in TRAINED:
        m = run.result(name)
        if name == "rl":
            continue  # rewards, not losses: its own section
        params = m.get("params")
        rows.append(
            [
                name,
                fmt(m.get("steps"), ",.0f"),
                f"{params / 1e6:.2f}M" if _num(params) else DASH,
                m.get("device", DASH),
                m.get("dtype", DASH),
                f"{fmt(m.get('train/loss_first'))} → {fmt(m.get('train/loss_last'))}" if m else DASH,
                f"{fmt(m.get('val/bpb_first'))} → {fmt(m.get('val/bpb'))}" if m else DASH,
                fmt(m.get("tok_per_s"), ",.0f"),
                fmt(100 * m["mfu"], ".1f") + "%" if _num(m.get("mfu")) else DASH,
                duration(m.get("train_time_s")),
            ]
        )
    out = [
        "## Training",
        "",
        *table(
            [
                "stage",
                "steps",
                "params",
                "device",
                "dtype",
                "train loss",
                "val bpb",
                "tok/s",
                "MFU",
                "train time",
            ],
            rows,
        ),
        "",
        "Val bpb of midtrain and sft is measured on their own chat validation mixtures, not the pretraining text.",
        "",
    ]
    for name in ("midtrain", "sft"):
        m = run.result(name)
        if m.get("mixture_counts"):
            counts = ", ".join(f"{k} {v:,}" for k, v in m["mixture_counts"].items())
            out.append(f"- {name} mixture: {counts}")
        for key, label in (
            ("quick_eval_before", f"{name} quick eval of its starting (base) model"),
            ("quick_eval", f"{name} quick eval"),
        ):
            if m.get(key):
                scores = ", ".join(f"{k} {fmt(v.get('accuracy'))} (n={v.get('n', DASH)})" for k, v in m[key].items())
                out.append(f"- {label}: {scores}")
    if out[-1] != "":
        out.append("")
    if loss_png:
        out += [f"![loss curves]({LOSS_PNG})", ""]
    return out


def eval_tasks(run: RunResults) -> list[str]:
    """Every chat eval task of the run, in the order the evals list them."""
    tasks: list[str] = []
    for model in CHAT_MODELS:
        for task in run.result(f"eval/{model}").get("tasks") or {}:
            if task not in tasks:
                tasks.append(task)
    return tasks


def base_bpb(run: RunResults) -> Any:
    """Base model val bpb: base_eval's (more tokens) when present, else pretraining's last."""
    return run.result("base_eval").get("val/bpb", run.result("pretrain").get("val/bpb"))


def eval_section(run: RunResults) -> list[str]:
    tasks = eval_tasks(run)
    base = run.result("base_eval")
    rows = [["base", *[DASH] * len(tasks), DASH, fmt(base.get("core_metric"), ".4f"), fmt(base_bpb(run))]]
    chance: dict[str, Any] = {}
    sizes: dict[str, Any] = {}
    for model in CHAT_MODELS:
        ev = run.result(f"eval/{model}")
        results = ev.get("tasks") or {}
        for t, r in results.items():
            chance.setdefault(t, r.get("baseline"))
            sizes.setdefault(t, r.get("n"))
        rows.append(
            [
                model,
                *[fmt((results.get(t) or {}).get("accuracy")) for t in tasks],
                fmt(ev.get("chatcore"), ".4f"),
                DASH,
                DASH,
            ]
        )
    rows.append(["*chance*", *[fmt(chance.get(t)) for t in tasks], "0.0000", "0.0000", DASH])
    out = ["## Evaluation", "", *table(["model", *tasks, "ChatCORE", "CORE", "val bpb"], rows), ""]
    if tasks:
        out.append(
            "Accuracy per task; ChatCORE and CORE are means of centred accuracy "
            "((acc − chance) / (1 − chance)). Examples per task: "
            + ", ".join(f"{t} {sizes.get(t, DASH)}" for t in tasks)
            + "."
        )
        out.append("")
    core = base.get("core") or {}
    if core:
        out += [
            "### Base model: CORE tasks",
            "",
            *table(
                ["task", "accuracy", "centred", "n"],
                [[t, fmt(r.get("accuracy")), fmt(r.get("centered")), str(r.get("n", DASH))] for t, r in core.items()],
            ),
            "",
        ]
    toy = base.get("toy") or {}
    if toy:
        out += [
            "### Base model: toy-world facts",
            "",
            *table(
                ["task", "accuracy", "n"],
                [[t, fmt(r.get("accuracy")), str(r.get("n", DASH))] for t, r in toy.items()],
            ),
            "",
        ]
    return out


def rl_section(run: RunResults, reward_png: bool) -> list[str]:
    m = run.result("rl")
    hist = run.stages["rl"].history if "rl" in run.stages else []
    out = ["## Reinforcement learning", ""]
    if not m and not hist:
        return [*out, f"{DASH} (the rl stage has not finished)", ""]
    rewards = series(hist, REWARD_KEY)[1]
    first = m.get("reward_first", rewards[0] if rewards else None)
    last = m.get("reward_last", rewards[-1] if rewards else None)
    out.append(f"- mean reward: **{fmt(first)} → {fmt(last)}** over {m.get('steps', len(rewards))} steps")
    if "eval/accuracy" in m or "eval/accuracy_start" in m:
        out.append(
            f"- held-out accuracy on the reward task: **{fmt(m.get('eval/accuracy_start'))} → "
            f"{fmt(m.get('eval/accuracy'))}**"
        )
    for key in sorted(k for k in m if k.startswith("pass@")):
        out.append(f"- {key}: {fmt(m[key])}")
    out.append("")
    if reward_png:
        out += [f"![reward curves]({REWARD_PNG})", ""]
    return out


def _sample_text(sample: Any) -> str:
    if isinstance(sample, dict):
        return "\n".join(f"{k}: {v}" for k, v in sample.items())
    return str(sample)


def samples_section(run: RunResults, per_task: int = 2) -> list[str]:
    out = ["## Samples", ""]
    for name, title in (
        ("pretrain", "Pretrained model (greedy, fixed prompts)"),
        ("base_eval", "Base model evaluation"),
        ("sft", "SFT model (fixed prompts)"),
    ):
        samples = run.result(name).get("samples") or []
        if samples:
            out += [f"### {title}", ""]
            for s in samples:
                out += [*fenced(_sample_text(s)), ""]
    for model in reversed(CHAT_MODELS):  # the most trained model that has examples
        results = run.result(f"eval/{model}").get("tasks") or {}
        if any(r.get("examples") for r in results.values()):
            out += [f"### Evaluation examples ({model} model)", ""]
            for task, r in results.items():
                for ex in (r.get("examples") or [])[:per_task]:
                    out += [
                        f"**{task}** (score {fmt(ex.get('score'), '.2f')})",
                        "",
                        *fenced(f"prompt: {ex.get('prompt', '')}\nreply:  {ex.get('reply', '')}"),
                        "",
                    ]
            break
    return out if len(out) > 2 else [*out, f"{DASH} (no samples recorded yet)", ""]


def config_section(run: RunResults) -> list[str]:
    parts = [
        f"# {name}: {st.dir.parent.name}/{st.dir.name}/config.yaml\n{st.config_text.rstrip()}"
        for name, st in run.stages.items()
        if st.config_text
    ]
    if not parts:
        return ["## Config", "", f"{DASH} (no stage has written its config.yaml yet)", ""]
    return [
        "## Config",
        "",
        "<details><summary>Resolved config slice of each stage</summary>",
        "",
        *fenced("\n\n".join(parts), "yaml"),
        "",
        "</details>",
        "",
    ]


def render_report(run: RunResults, loss_png: bool, reward_png: bool) -> str:
    from llmstack import __version__

    starts = sorted(
        st.provenance["started"] for st in run.stages.values() if st.provenance and st.provenance.get("started")
    )
    head = [
        f"# llmstack report: {run.name}",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by llmstack {__version__}"
        + (f"; first stage started {starts[0]}." if starts else "."),
        "",
    ]
    sections = (
        head,
        environment_section(run),
        stages_section(run),
        data_section(run),
        training_section(run, loss_png),
        eval_section(run),
        rl_section(run, reward_png),
        samples_section(run),
        config_section(run),
    )
    return "\n".join(line for section in sections for line in section).rstrip() + "\n"


def write_report(run_dir: Path | str) -> Path:
    """runs/<run>/report.md plus its PNGs (PNGs first, so a report never links a missing plot)."""
    run = load_run(run_dir)
    loss_png = plot_training(run, run.dir / LOSS_PNG)
    reward_png = plot_rl(run, run.dir / REWARD_PNG)
    out = run.dir / "report.md"
    _atomic_text(out, render_report(run, loss_png, reward_png))
    return out


# ---------------------------------------------------------------------------------------- sweeps


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def run_settings(run: RunResults) -> dict[str, Any]:
    """Every config value of a run, dotted (`model.depth`), from its stages' config.yaml."""
    flat: dict[str, Any] = {}
    for st in run.stages.values():
        flat.update({k: v for k, v in _flatten(st.config).items() if not k.startswith("inputs.")})
    return flat


def name_overrides(name: str) -> dict[str, str]:
    """{key: value} of the overrides a sweep point appended to its run name."""
    found = list(_NAME_OVERRIDE.finditer(name))
    return {
        m[1]: name[m.end() : found[i + 1].start() if i + 1 < len(found) else len(name)] for i, m in enumerate(found)
    }


def varied_settings(runs: list[RunResults]) -> list[dict[str, str]]:
    """What differs between the runs: the sweep overrides in their names, else the config diff."""
    named = [name_overrides(r.name) for r in runs]
    if any(named):
        return named
    flats = [run_settings(r) for r in runs]
    # keys every run has (a stage one run has not reached yet is not a setting that varies)
    common = set.intersection(*(set(f) for f in flats))
    keys = sorted(k for k in common if len({json.dumps(f[k], sort_keys=True) for f in flats}) > 1)
    return [{k: str(f[k]) for k in keys[:3]} for f in flats]


def final_chat_model(run: RunResults) -> str | None:
    return next((m for m in reversed(CHAT_MODELS) if run.result(f"eval/{m}")), None)


def plot_sweep(
    labels: list[str],
    depths: list[int] | None,
    bpb: list[Any],
    chatcore: list[Any],
    models: list[str],
    path: Path,
) -> None:
    """Val bpb and ChatCORE against depth (a depth sweep) or per run; ChatCORE points name their model."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    axes = fig.subplots(1, 2)
    xs = depths if depths else list(range(len(labels)))
    for ax, values, title in ((axes[0], bpb, "base val bits per byte"), (axes[1], chatcore, "ChatCORE")):
        pts = sorted((x, float(v), m) for x, v, m in zip(xs, values, models, strict=True) if _num(v) is not None)
        if pts:  # a line only along a real axis; separate runs are separate points
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", linestyle="-" if depths else "none")
        ax.margins(x=0.1)
        if ax is axes[1]:  # runs may stop at different stages: say which model each point is
            for x, v, m in pts:
                ax.annotate(m, (x, v), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_title(title)
        ax.set_xlabel("model.depth" if depths else "run")
        ax.set_xticks(xs, [str(d) for d in xs] if depths else labels, **({} if depths else {"rotation": 20}))
        ax.grid(alpha=0.3)
    _save(fig, path)


def write_sweep(out: Path | str, run_dirs: list[Path | str]) -> Path:
    """runs/<sweep>/sweep.md: one row per run, and a plot of val bpb and ChatCORE across the sweep."""
    out = Path(out)
    if not run_dirs:
        raise ValueError("a sweep report needs at least one run folder")
    runs = [load_run(d) for d in run_dirs]
    varied = varied_settings(runs)
    tasks: list[str] = []
    for r in runs:
        tasks += [t for t in eval_tasks(r) if t not in tasks]
    depths = [run_settings(r).get("model.depth") for r in runs]
    # a depth axis when each run has its own depth (a depth sweep); otherwise one category per run
    numeric = all(isinstance(d, int) for d in depths) and len(set(depths)) == len(depths) > 1
    rows, bpbs, chatcores, labels, models = [], [], [], [], []
    for r, v in zip(runs, varied, strict=True):
        model = final_chat_model(r)
        models.append(model or DASH)
        ev = r.result(f"eval/{model}") if model else {}
        params = r.result("pretrain").get("params")
        link = os.path.relpath(r.dir / "report.md", out.parent)
        label = " ".join(f"{k}={x}" for k, x in v.items()) or r.name
        labels.append(label)
        bpbs.append(base_bpb(r))
        chatcores.append(ev.get("chatcore"))
        rows.append(
            [
                f"[{r.name}]({link})",
                label,
                f"{params / 1e6:.2f}M" if _num(params) else DASH,
                fmt(base_bpb(r)),
                fmt(r.result("base_eval").get("core_metric"), ".4f"),
                model or DASH,
                fmt(ev.get("chatcore"), ".4f"),
                *[fmt(((ev.get("tasks") or {}).get(t) or {}).get("accuracy")) for t in tasks],
            ]
        )
    plot_sweep(labels, depths if numeric else None, bpbs, chatcores, models, out.parent / SWEEP_PNG)
    lines = [
        f"# llmstack sweep: {out.parent.name}",
        "",
        f"{len(runs)} runs; generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')}. Chat metrics are the most "
        "trained evaluated model of each run (rl, else sft, else midtrain).",
        "",
        *table(["run", "varied", "params", "val bpb", "CORE", "model", "ChatCORE", *tasks], rows, text_columns=2),
        "",
        f"![sweep]({SWEEP_PNG})",
        "",
    ]
    _atomic_text(out, "\n".join(lines))
    # remember the runs so `llmstack report` can regenerate the sweep later
    _atomic_text(
        out.parent / "sweep.json",
        json.dumps({"runs": [os.path.relpath(r.dir, out.parent) for r in runs]}, indent=2) + "\n",
    )
    return out


# ------------------------------------------------------------------------------------ regenerate


def regenerate(runs_root: Path | str = "runs", run: str | None = None) -> list[Path]:
    """Rewrite report.md of one run (or sweep) folder under `runs_root`, or of all of them."""
    runs_root = Path(runs_root)
    if run is not None:
        folders = [runs_root / run]
        if not (folders[0] / "run.json").is_file() and not (folders[0] / "sweep.json").is_file():
            known = sorted(p.parent.name for p in runs_root.glob("*/run.json"))
            raise FileNotFoundError(f"no run named {run!r} under {runs_root}/ (known: {', '.join(known) or 'none'})")
    else:
        folders = sorted({p.parent for p in [*runs_root.glob("*/run.json"), *runs_root.glob("*/sweep.json")]})
        if not folders:
            raise FileNotFoundError(f"no runs under {runs_root}/: run the workflow first (snakemake --cores all)")
    written = []
    for folder in sorted(folders, key=lambda f: (f / "sweep.json").is_file()):  # runs before sweeps
        if (folder / "run.json").is_file():
            written.append(write_report(folder))
        else:
            listed = json.loads((folder / "sweep.json").read_text())["runs"]
            written.append(write_sweep(folder / "sweep.md", [folder / p for p in listed]))
    return written
