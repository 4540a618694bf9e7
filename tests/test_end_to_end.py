"""The whole DAG for real, shrunk to seconds per stage: data -> ... -> report, then the rerun sets
of a changed and a changed-back hyperparameter against that complete run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from test_snakemake_report import report_contents

from llmstack.artifacts import sha256_file
from llmstack.config import section_class
from llmstack.pipeline import STAGES
from llmstack.plan import plan_runs

REPO = Path(__file__).resolve().parents[1]
WORLD = "world_seed:0,n_entities:16"  # overrides are split on whitespace: no spaces inside
SMALL = " ".join(
    [
        "data.embedded.n_entities=16 data.embedded.train_bytes=300000 data.embedded.val_bytes=20000",
        "data.embedded.shard_bytes=150000 tokenizer.vocab_size=384 tokenizer.max_chars=300000",
        "model.depth=1 model.head_dim=32 model.seq_len=64",
        "pretrain.total_batch_tokens=512 pretrain.device_batch_size=4 pretrain.max_steps=8 pretrain.eval_every=4",
        "pretrain.eval_tokens=1024 pretrain.sample_every=0 pretrain.ckpt_every=4 pretrain.compile=false",
        "base_eval.toy_questions=8 base_eval.bpb_tokens=2048",
        f"midtrain.mixture=[{{task:toyworld_chat,size:32,{WORLD}}}] midtrain.val_mixture=[] midtrain.eval_every=0",
        "midtrain.total_batch_tokens=512 midtrain.device_batch_size=4 midtrain.quick_eval_examples=4",
        f"sft.mixture=[{{task:toyworld_chat,size:32,{WORLD}}},{{task:toy_arithmetic,size:16,{WORLD}}}]",
        "sft.val_mixture=[] sft.eval_every=0 sft.total_batch_tokens=512 sft.device_batch_size=4",
        "sft.quick_eval_examples=4",
        "rl.num_steps=2 rl.prompts_per_step=2 rl.samples_per_prompt=2 rl.max_new_tokens=12 rl.eval_every=0",
        "rl.eval_examples=4 rl.ckpt_every=1 eval.max_per_task=4 eval.max_new_tokens=12",
    ]
)


def smk(workdir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    assert res.returncode == 0, f"{' '.join(args)}\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    return res.stdout + res.stderr


def planned_rules(out: str) -> set[str]:
    table = re.search(r"^job\s+count\n-+\s+-+\n(.*?)^total", out, re.S | re.M)
    return {line.split()[0] for line in table.group(1).strip().splitlines()} if table else set()


def slice_leaves(section_cls: type, node: dict[str, Any]) -> set[str]:
    """`Class.field` of every leaf setting in a slice section (nested dataclass sections walked)."""
    out = set()
    types = {f.name: f.default_factory for f in fields(section_cls)}
    for key, value in node.items():
        if is_dataclass(types[key]):
            out |= slice_leaves(types[key], value)
        else:
            out.add(f"{section_cls.__name__}.{key}")
    return out


def check_every_setting_was_read(reads_dir: Path) -> None:
    """For every stage of the run, every leaf of its slice was read by the stage's code (execution
    and plan settings are not in the slice, so they are the declared exceptions)."""
    (plan,) = plan_runs("tiny", overrides=SMALL)
    for name, spec in plan.stages.items():
        reads = set(json.loads((reads_dir / f"{spec.stage}-{spec.key}.json").read_text()))
        leaves = set()
        for section in STAGES[spec.stage].sections:
            leaves |= slice_leaves(section_class(section), spec.config[section])
        assert leaves - reads == set(), f"{name}: settings in the slice that the stage never read"


@pytest.mark.slow
def test_whole_pipeline_runs_and_caches(tmp_path):
    reads = tmp_path / "reads"
    reads.mkdir()
    smk(tmp_path, "--config", f"overrides={SMALL}", env={"LLMSTACK_RECORD_READS": str(reads)})
    check_every_setting_was_read(reads)
    for meta_path in (tmp_path / "artifacts").glob("*/*/meta.json"):
        meta = json.loads(meta_path.read_text())
        assert meta["key"] == meta_path.parent.name and meta["seconds"] > 0 and meta["git"], meta_path
        for out in meta["outputs"].values():
            assert sha256_file(meta_path.parent / out["file"]) == out["sha256"]
        assert set(meta["outputs"]) == set(STAGES[meta["stage"]].outputs)
    assert len(list((tmp_path / "artifacts").glob("*/*/meta.json"))) == 10
    model_meta = torch.load(next((tmp_path / "artifacts" / "sft").glob("*/model.pt")), weights_only=True)["meta"]
    assert model_meta["git"] and model_meta["base_lrs"]["matrix_lr"] == 0.02 and model_meta["stage"] == "sft"
    report = (tmp_path / "runs" / "tiny" / "report.md").read_text()
    assert "ChatCORE" in report and "pretrain" in report
    assert (tmp_path / "runs" / "tiny" / "loss_curves.png").stat().st_size > 1000
    for stage in ("pretrain", "midtrain", "sft", "rl"):
        assert list((tmp_path / "artifacts" / stage).glob("*/model.pt")), stage
    assert len(list((tmp_path / "artifacts" / "eval").glob("*/eval.json"))) == 3
    # Snakemake's own report of the finished run: the card and its loss plot, embedded in one HTML file
    smk(tmp_path, "--report", str(tmp_path / "report.html"), "--config", f"overrides={SMALL}")
    files, cats = report_contents(tmp_path / "report.html")
    assert files["runs/tiny/report.md"].decode() == report
    assert files["runs/tiny/loss_curves.png"] == (tmp_path / "runs" / "tiny" / "loss_curves.png").read_bytes()
    (pretrain_metrics,) = cats["pretrain"]
    assert json.loads(files[pretrain_metrics])["stage"] == "pretrain"
    check_exported_sft_matches_the_engine(tmp_path)
    # a changed hyperparameter reruns exactly its stage and what follows; changing it back, nothing
    changed = planned_rules(smk(tmp_path, "-n", "--config", f"overrides={SMALL} sft.init_lr_frac=0.5"))
    assert changed == {"sft", "rl", "eval", "report", "run_manifest", "all"}
    assert planned_rules(smk(tmp_path, "-n", "--config", f"overrides={SMALL}")) == set()


def check_exported_sft_matches_the_engine(project: Path) -> None:
    """The run's trained sft model, exported and loaded by transformers from the folder alone, gives
    the engine's greedy reply token for token and the same chat-template ids."""
    transformers = pytest.importorskip("transformers")
    from llmstack.checkpoint import load_model
    from llmstack.engine import Engine
    from llmstack.export.cli import main as export_main
    from llmstack.tokenizer import Tokenizer

    out = project / "export-sft"
    assert export_main([str(out), "--root", str(project), "--stage", "sft"]) == 0
    hf_tok = transformers.AutoTokenizer.from_pretrained(out, trust_remote_code=True, local_files_only=True)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True, local_files_only=True)
    model, _ = load_model(next((project / "artifacts" / "sft").glob("*/model.pt")))
    tok = Tokenizer.load(next((project / "artifacts" / "tokenizer").glob("*/tokenizer.model")))
    engine = Engine(model, tok, precision="fp32")
    for question in ("Who are you?", "Where does Lamosai live?"):
        ids = tok.render_for_completion({"messages": [{"role": "user", "content": question}]})
        chat = [{"role": "user", "content": question}]
        templated = hf_tok.apply_chat_template(chat, tokenize=True, add_generation_prompt=True, return_dict=True)
        assert list(templated["input_ids"]) == list(ids)
        (reply,), _ = engine.generate_batch(ids, 1, 12, temperature=0.0)
        # up to the first special token: after a python call the engine runs the tool, transformers does not
        n = next((i + 1 for i, t in enumerate(reply) if tok.is_special(t)), len(reply))
        out_ids = hf.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False)[0, len(ids) :]
        assert out_ids.tolist()[:n] == reply[:n], question


def test_the_setting_check_catches_an_ignored_setting(tmp_path):
    # The same check as above on recorded reads where sft never read one setting: it must fail.
    (plan,) = plan_runs("tiny", overrides=SMALL)
    for spec in plan.stages.values():
        leaves = set()
        for section in STAGES[spec.stage].sections:
            leaves |= slice_leaves(section_class(section), spec.config[section])
        if spec.stage == "sft":
            leaves.discard("ChatTrainConfig.init_lr_frac")
        (tmp_path / f"{spec.stage}-{spec.key}.json").write_text(json.dumps(sorted(leaves)))
    with pytest.raises(AssertionError, match="sft"):
        check_every_setting_was_read(tmp_path)
