"""The report card's model results: training, evaluation, reinforcement learning, samples.

Rows follow the stage table (trained stages, the chat models the eval stage scores, the base
model and the stage that scores it); a stage gets the reward treatment when its curves or results
record a reward, so no section names a stage.
"""

from __future__ import annotations

from typing import Any

from llmstack.report.gather import (
    BASE_EVAL,
    BASE_LABEL,
    CHAT_EVALS,
    REWARD_KEY,
    TRAINED,
    RunResults,
    base_bpb,
    eval_tasks,
    reward_stages,
)
from llmstack.report.markdown import DASH, duration, fenced, fmt, millions, num, table
from llmstack.report.plots import series

TRAINING_HEADER = ["stage", "steps", "params", "device", "dtype", "train loss", "val bpb", "tok/s", "MFU", "train time"]


# ------------------------------------------------------------------------------------- training


def _training_row(run: RunResults, name: str) -> list[str]:
    m, st = run.result(name), run.stages[name]
    return [
        name,
        fmt(m.get("steps"), ",.0f"),
        millions(m.get("params")),
        st.info("device", DASH),
        st.info("dtype", DASH),
        f"{fmt(m.get('train/loss_first'))} → {fmt(m.get('train/loss_last'))}" if m else DASH,
        f"{fmt(m.get('val/bpb_first'))} → {fmt(m.get('val/bpb'))}" if m else DASH,
        fmt(m.get("tok_per_s"), ",.0f"),
        fmt(100 * m["mfu"], ".1f") + "%" if num(m.get("mfu")) else DASH,
        duration(m.get("train_time_s")),
    ]


def _chat_training_notes(run: RunResults, name: str) -> list[str]:
    """The mixture a chat stage trained on and its quick evals, when its metrics record them."""
    m, out = run.result(name), []
    if m.get("mixture_counts"):
        out.append(f"- {name} mixture: " + ", ".join(f"{k} {v:,}" for k, v in m["mixture_counts"].items()))
    for key, label in (
        ("quick_eval_before", f"{name} quick eval of its starting (base) model"),
        ("quick_eval", f"{name} quick eval"),
    ):
        if m.get(key):
            scores = ", ".join(f"{k} {fmt(v.get('accuracy'))} (n={v.get('n', DASH)})" for k, v in m[key].items())
            out.append(f"- {label}: {scores}")
    return out


def training_section(run: RunResults, loss_png: str | None) -> list[str]:
    """Next-token training stages; a stage that learns from rewards has its own section."""
    rewarded = reward_stages(run)
    names = [n for n in TRAINED if n in run.stages and n not in rewarded]
    out = [
        "## Training",
        "",
        *table(TRAINING_HEADER, [_training_row(run, n) for n in names]),
        "",
        "Val bpb of the chat stages is measured on their own chat validation mixtures, not the pretraining text.",
        "",
    ]
    notes = [line for n in names for line in _chat_training_notes(run, n)]
    out += [*notes, ""] if notes else []
    return [*out, f"![loss curves]({loss_png})", ""] if loss_png else out


# ----------------------------------------------------------------------------------- evaluation


def _eval_row(run: RunResults, model: str, tasks: list[str]) -> list[str]:
    ev = run.result(CHAT_EVALS[model])
    results = ev.get("tasks") or {}
    accuracies = [fmt((results.get(t) or {}).get("accuracy")) for t in tasks]
    return [model, *accuracies, fmt(ev.get("chatcore"), ".4f"), DASH, DASH]


def _task_table(title: str, scores: dict[str, Any], centred: bool) -> list[str]:
    """One base-model task group (CORE or toy-world facts) as its own small table."""
    if not scores:
        return []
    header = ["task", "accuracy", *(["centred"] if centred else []), "n"]
    rows = [
        [t, fmt(r.get("accuracy")), *([fmt(r.get("centered"))] if centred else []), str(r.get("n", DASH))]
        for t, r in scores.items()
    ]
    return [f"### Base model: {title}", "", *table(header, rows), ""]


def eval_section(run: RunResults) -> list[str]:
    tasks = eval_tasks(run)
    base = run.result(BASE_EVAL)
    rows = [[BASE_LABEL, *[DASH] * len(tasks), DASH, fmt(base.get("core_metric"), ".4f"), fmt(base_bpb(run))]]
    rows += [_eval_row(run, model, tasks) for model in CHAT_EVALS]
    chance, sizes = {}, {}
    for instance in CHAT_EVALS.values():
        for t, r in (run.result(instance).get("tasks") or {}).items():
            chance.setdefault(t, r.get("baseline"))
            sizes.setdefault(t, r.get("n"))
    rows.append(["*chance*", *[fmt(chance.get(t)) for t in tasks], "0.0000", "0.0000", DASH])
    out = ["## Evaluation", "", *table(["model", *tasks, "ChatCORE", "CORE", "val bpb"], rows), ""]
    if tasks:
        out += [
            "Accuracy per task; ChatCORE and CORE are means of centred accuracy "
            "((acc − chance) / (1 − chance)). Examples per task: "
            + ", ".join(f"{t} {sizes.get(t, DASH)}" for t in tasks)
            + ".",
            "",
        ]
    out += _task_table("CORE tasks", base.get("core") or {}, centred=True)
    return out + _task_table("toy-world facts", base.get("toy") or {}, centred=False)


# --------------------------------------------------------------------------- reinforcement learning


def _reward_lines(run: RunResults, name: str) -> list[str]:
    m = run.result(name)
    rewards = series(run.history(name), REWARD_KEY)[1]
    first = m.get("reward_first", rewards[0] if rewards else None)
    last = m.get("reward_last", rewards[-1] if rewards else None)
    out = [f"- {name} mean reward: **{fmt(first)} → {fmt(last)}** over {m.get('steps', len(rewards))} steps"]
    if "eval/accuracy" in m or "eval/accuracy_start" in m:
        out.append(
            f"- held-out accuracy on the reward task: **{fmt(m.get('eval/accuracy_start'))} → "
            f"{fmt(m.get('eval/accuracy'))}**"
        )
    return out + [f"- {key}: {fmt(m[key])}" for key in sorted(k for k in m if k.startswith("pass@"))]


def rl_section(run: RunResults, reward_png: str | None) -> list[str]:
    names = reward_stages(run)
    out = ["## Reinforcement learning", ""]
    if not names:
        return [*out, f"{DASH} (no stage has recorded a reward yet: reinforcement learning has not finished)", ""]
    out += [line for n in names for line in _reward_lines(run, n)] + [""]
    return [*out, f"![reward curves]({reward_png})", ""] if reward_png else out


# -------------------------------------------------------------------------------------- samples


def _sample_text(sample: Any) -> str:
    if isinstance(sample, dict):
        return "\n".join(f"{k}: {v}" for k, v in sample.items())
    return str(sample)


def _eval_examples(run: RunResults, per_task: int) -> list[str]:
    """Graded replies of the most trained chat model that has some."""
    for model in reversed(CHAT_EVALS):
        results = run.result(CHAT_EVALS[model]).get("tasks") or {}
        if not any(r.get("examples") for r in results.values()):
            continue
        out = [f"### Evaluation examples ({model} model)", ""]
        for task, r in results.items():
            for ex in (r.get("examples") or [])[:per_task]:
                reply = f"prompt: {ex.get('prompt', '')}\nreply:  {ex.get('reply', '')}"
                out += [f"**{task}** (score {fmt(ex.get('score'), '.2f')})", "", *fenced(reply), ""]
        return out
    return []


def samples_section(run: RunResults, per_task: int = 2) -> list[str]:
    """Greedy samples every stage recorded from fixed prompts, then graded eval replies."""
    out = ["## Samples", ""]
    for name in run.stages:
        samples = run.result(name).get("samples") or []
        if samples:
            out += [f"### {name}: greedy samples from fixed prompts", ""]
            for s in samples:
                out += [*fenced(_sample_text(s)), ""]
    out += _eval_examples(run, per_task)
    return out if len(out) > 2 else [*out, f"{DASH} (no samples recorded yet)", ""]
