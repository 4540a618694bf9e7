"""The README.md model card of an export: what the run's metadata says about the exported model.

Everything comes from files the workflow wrote: runs/<run>/run.json names the stage folders, each
folder's meta.json holds its config slice, seconds, device and summary metrics, and model.pt's meta
holds the step and git commit. A stage that has not finished (no meta.json) shows as "not run".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmstack.pipeline import EACH_CHAT_MODEL, STAGES, run_order

USAGE = """```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tok = AutoTokenizer.from_pretrained("{path}", trust_remote_code=True)
model = AutoModelForCausalLM.from_pretrained("{path}", trust_remote_code=True)
ids = tok.apply_chat_template([{{"role": "user", "content": "Hello!"}}], add_generation_prompt=True,
                              return_tensors="pt", return_dict=True)
out = model.generate(**ids, max_new_tokens=64, do_sample=False)
print(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
```"""


def lineage(stage: str) -> list[str]:
    """The stage and every stage it was made from, in the table's order (sft: data .. midtrain, sft)."""
    seen, frontier = set(), [stage]
    while frontier:
        name = frontier.pop()
        if name not in seen:
            seen.add(name)
            frontier += [i.stage for i in STAGES[name].inputs.values() if i.stage != EACH_CHAT_MODEL]
    return [s for s in STAGES if s in seen]


def card_instances(stage: str) -> list[str]:
    """run.json instances the card reports: the lineage, and every evaluation of a model in it
    (a stage that reads one of those models and makes no model: base_eval, eval/<stage>)."""
    chain = lineage(stage)
    out = []
    for name in run_order():
        st, _, model_stage = name.partition("/")
        sources = {model_stage if i.stage == EACH_CHAT_MODEL else i.stage for i in STAGES[st].inputs.values()}
        # a chat_label marks a model one can talk to (the tokenizer's "model" output is not one)
        evaluates = "model" not in STAGES[st].outputs and any(s in chain and STAGES[s].chat_label for s in sources)
        if st in chain or evaluates:
            out.append(name)
    return out


def read_meta(root: Path, folder: str) -> dict[str, Any] | None:
    path = root / folder / "meta.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def metrics_cell(metrics: dict[str, Any]) -> str:
    """The summary figures of one stage: numbers and short strings, one `name value` per item."""
    items = [f"{k} {fmt(v)}" for k, v in metrics.items()
             if k != "stage" and (isinstance(v, int | float) and not isinstance(v, bool) or isinstance(v, str)
                                  and len(v) < 40)]  # fmt: skip
    return "; ".join(items) or "—"


def stage_rows(root: Path, manifest: dict[str, Any], stage: str) -> list[str]:
    rows = ["| stage | folder | steps | seconds | device | figures |", "|---|---|---|---|---|---|"]
    for name in card_instances(stage):
        folder = manifest["stages"].get(name)
        if folder is None:
            continue
        meta = read_meta(root, folder)
        if meta is None:
            rows.append(f"| {name} | `{folder}` | | | | not run |")
            continue
        metrics = meta.get("metrics") or {}
        steps = metrics.get("steps", "")
        rows.append(f"| {name} | `{folder}` | {steps} | {fmt(meta.get('seconds', ''))} | {meta.get('device', '')} "
                    f"| {metrics_cell(metrics)} |")  # fmt: skip
    return rows


def data_lines(root: Path, manifest: dict[str, Any]) -> list[str]:
    """The data and tokenizer settings, as their stages' config slices record them."""
    lines = []
    for name in lineage("tokenizer"):
        meta = read_meta(root, manifest["stages"].get(name, ""))
        if meta is None:
            continue
        for section, body in (meta.get("config") or {}).items():
            lines.append(f"- `{section}`: `{fmt(body)}`")
        if meta.get("metrics"):
            lines.append(f"- {name} figures: {metrics_cell(meta['metrics'])}")
    return lines or ["- (no data or tokenizer metadata found)"]


def model_card(root: Path, run: str, manifest: dict[str, Any], stage: str, model_meta: dict[str, Any],
               model_config: dict[str, Any], out_name: str) -> str:  # fmt: skip
    """README.md of the export of `stage` of `run` (root: the project folder run.json is relative to)."""
    c = model_config
    folder = manifest["stages"][stage]
    arch = (f"depth {c['n_layer']}, width {c['n_embd']}, {c['n_head']} query / {c['n_kv_head']} key-value heads, "
            f"vocab {c['vocab_size']}, context {c['seq_len']} tokens")  # fmt: skip
    lines = [
        "---",
        "library_name: transformers",
        "tags: [llmstack, custom_code]",
        "---",
        f"# llmstack `{stage}` model of run `{run}`",
        "",
        f"Exported from `{folder}/model.pt` (step {model_meta.get('step', '?')}, git "
        f"`{model_meta.get('git', '?')}`) with the tokenizer `{manifest['stages'].get('tokenizer')}/tokenizer.model`,",
        "both named by the run's `run.json`. Architecture: a GPT in the nanochat recipe (rotary, QK-norm,",
        f"ReLU² MLP, grouped-query attention, logit softcap {c.get('softcap', 15.0)}); {arch}.",
        "",
        "## Data",
        *data_lines(root, manifest),
        "",
        "## Training and evaluation",
        *stage_rows(root, manifest, stage),
        "",
        "## Use",
        "The modeling code ships in this folder (`trust_remote_code=True`); it needs torch, sentencepiece",
        "and transformers, and runs offline. The chat template renders conversations exactly as llmstack does.",
        "",
        USAGE.format(path=out_name),
        "",
    ]
    return "\n".join(lines)
