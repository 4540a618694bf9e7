"""Base eval: CORE scoring rules (mc, schema, lm) with a stub model, centred accuracy, the real task
files with a random GPT, toy-world questions, and the stage entry point writing a complete eval.json."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from llmstack.checkpoint import save_model
from llmstack.config import build_section
from llmstack.data.sources import build_data
from llmstack.data.toyworld import build_world, fact_questions, iter_documents
from llmstack.evaluate.core_eval import (
    LoadedTask,
    core_metric,
    encode_candidates,
    evaluate_core,
    evaluate_core_task,
    load_core_tasks,
    score_examples,
)
from llmstack.evaluate.toy_eval import choice_prompts, evaluate_toy, names_value
from llmstack.model import GPT, GPTConfig
from llmstack.stages.base_eval import run
from llmstack.stages.common import stage_main
from llmstack.tasks.core import CoreTask, CoreTaskInfo, build_prompts
from llmstack.tokenizer import Tokenizer, train_tokenizer

WORLD = (0, 16)  # seed, n_entities


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Models here are tiny: a second thread only adds contention (measured 4 vs 45 ms per decode
    step on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> Tokenizer:
    path = tmp_path_factory.mktemp("tok") / "tok.model"
    train_tokenizer(iter_documents(build_world(*WORLD), 0), path, vocab_size=384, max_chars=200_000)
    return Tokenizer.load(path)


def tiny_gpt(vocab_size: int, seq_len: int = 128) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab_size, seq_len=seq_len, n_layer=1, n_embd=64, n_head=2, n_kv_head=1))


class StubLM(torch.nn.Module):
    """Logits that predict `favoured` once `trigger` has appeared in the row, `other` before it."""

    def __init__(self, vocab_size: int, favoured: int, trigger: int, other: int, seq_len: int = 128):
        super().__init__()
        self.config = GPTConfig(vocab_size=vocab_size, seq_len=seq_len, n_layer=1, n_embd=2, n_head=1, n_kv_head=1)
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the scorer a device to read
        self.favoured, self.trigger, self.other = favoured, trigger, other

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        seen = (idx == self.trigger).long().cumsum(dim=1) > 0  # (B, T)
        logits = torch.zeros(*idx.shape, self.config.vocab_size)
        logits[..., self.other] = 10.0
        logits[seen] = 0.0
        logits[..., self.favoured] += seen.float() * 10.0
        return logits + self.anchor


def single_token(tok: Tokenizer, text: str) -> int:
    ids = tok.encode(text)
    assert len(ids) == 1, f"{text!r} is {len(ids)} tokens in the test tokenizer"
    return ids[0]


@pytest.fixture(scope="module")
def stub(tok) -> StubLM:
    # " the" is one token in any toy-world tokenizer; "Q" triggers it, " is" is the default guess.
    return StubLM(tok.vocab_size, single_token(tok, " the"), single_token(tok, "Q"), single_token(tok, " is"))


# ------------------------------------------------------------------------------------ task names


def test_core_tasks_without_a_bundle_fail_in_one_line():
    with pytest.raises(ValueError, match="need an eval bundle") as err:
        load_core_tasks(["copa"], None)
    assert "\n" not in str(err.value)
    assert load_core_tasks([], None) == []  # no CORE tasks: nothing to find


# ------------------------------------------------------------------------------------ scoring rules


def test_long_rows_are_cut_from_the_left_keeping_the_continuation(tok):
    prompts = [{"context": "Jelo lives in Tifivale. " * 20 + "Jelo is", "continuation": " 51 years old."}]
    ((ids, start),) = encode_candidates(tok, prompts, seq_len=16)
    cont = tok.encode(" 51 years old.")
    assert len(ids) == 16 and ids[start:] == cont and start == 16 - len(cont)
    ((short, s0),) = encode_candidates(tok, [{"context": "Hi", "continuation": " there"}], seq_len=16)
    assert short[0] == tok.bos_id and short[s0:] == tok.encode(" there")


def test_mc_picks_the_continuation_the_model_prefers(tok, stub):
    for gold in range(3):
        choices = ["bored cat", "lazy dog", "green fox"]
        choices[gold] = "the the the"
        example = {"kind": "mc", "contexts": ["Q then"], "continuations": choices, "gold": gold}
        prompts = build_prompts(example, [])
        assert score_examples(stub, tok, [("mc", prompts, gold)], progress=False) == [True]
        wrong = (gold + 1) % 3
        assert score_examples(stub, tok, [("mc", prompts, wrong)], progress=False) == [False]


def test_schema_picks_the_context_that_makes_the_continuation_likely(tok, stub):
    # Only the context holding the trigger token makes " the the" likely.
    example = {"kind": "schema", "contexts": ["a dog ran", "Q said"], "continuations": ["the the"], "gold": 1}
    prompts = build_prompts(example, [])
    assert score_examples(stub, tok, [("schema", prompts, 1)], progress=False) == [True]
    assert score_examples(stub, tok, [("schema", prompts, 0)], progress=False) == [False]


def test_lm_needs_greedy_decoding_to_reproduce_every_token(tok, stub):
    def lm(cont: str) -> tuple[str, list[dict], int]:
        ex = {"kind": "lm", "contexts": ["Q:"], "continuations": [cont], "gold": 0}
        return ("lm", build_prompts(ex, []), 0)

    got = score_examples(stub, tok, [lm("the the the"), lm("the the cat"), lm("is")], progress=False)
    assert got == [True, False, False]


def test_batching_changes_no_score(tok):
    model = tiny_gpt(tok.vocab_size).eval()
    examples = [
        ("mc", [{"context": f"Q: {w}", "continuation": c} for c in (" red", " a blue car", " green.")], 0)
        for w in ("one", "a longer question here", "x")
    ]
    one_by_one = [score_examples(model, tok, [ex], batch_tokens=1, progress=False)[0] for ex in examples]
    assert score_examples(model, tok, examples, batch_tokens=10_000, progress=False) == one_by_one


def test_centred_accuracy_and_core_metric(tok, stub, tmp_path):
    # 3 two-way examples, the stub gets 2 right: accuracy 2/3, centred (2/3 - 0.5) / 0.5 = 1/3.
    rows = [
        {"query": "Q then", "choices": ["the the", "cat dog"], "gold": 0},
        {"query": "Q then", "choices": ["cat dog", "the the"], "gold": 1},
        {"query": "Q then", "choices": ["the the", "cat dog"], "gold": 1},
    ]
    path = tmp_path / "copa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = CoreTask(path, info=CoreTaskInfo("copa", "copa.jsonl", "mc", 0, 0.5))
    r = evaluate_core_task(stub, tok, LoadedTask("copa", task, 0), max_per_task=0, progress=False)
    assert r["n"] == 3 and math.isclose(r["accuracy"], 2 / 3) and math.isclose(r["centered"], 1 / 3)
    assert core_metric({"a": {"centered": 0.5}, "b": {"centered": -0.1}}) == pytest.approx(0.2)
    assert core_metric({}) is None


# ------------------------------------------------------------------------------- real task files


# label: (file under shared/data, icl_task_type, few-shot count, random baseline %), from SOURCES.md
SHARED_TASKS = {
    "copa": ("core/commonsense_reasoning/copa.jsonl", "multiple_choice", 0, 50.0),
    "winograd": ("core/language_understanding/winograd_wsc.jsonl", "schema", 3, 50.0),
    "lambada_openai": ("core/language_understanding/lambada_openai.jsonl", "language_modeling", 0, 0.0),
    "hellaswag_zeroshot": ("hellaswag/hellaswag_val_full.txt.bz2", "multiple_choice", 0, 25.0),
}


def shared_bundle(shared_data: Path, root: Path) -> Path:
    """A bundle folder over the shared task files (symlinked), with metadata written from SOURCES.md."""
    tasks = []
    with open(root / "eval_meta_data.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Eval Task", "Random baseline"])
        for label, (path, kind, shots, base) in SHARED_TASKS.items():
            (root / "eval_data" / path).parent.mkdir(parents=True, exist_ok=True)
            (root / "eval_data" / path).symlink_to(shared_data / path)
            tasks.append({"label": label, "dataset_uri": path, "num_fewshot": [shots], "icl_task_type": kind})
            w.writerow([label, base])
    (root / "core.yaml").write_text(yaml.safe_dump({"icl_tasks": tasks}))
    return root


def test_real_core_tasks_with_a_random_model(shared_data, tok, tmp_path):
    model = tiny_gpt(tok.vocab_size, seq_len=256)
    tasks = load_core_tasks(list(SHARED_TASKS), shared_bundle(shared_data, tmp_path))
    assert [t.fewshot for t in tasks] == [0, 3, 0, 0]
    results = evaluate_core(model, tok, tasks, max_per_task=8, progress=False)
    assert set(results) == {"copa", "winograd", "lambada_openai", "hellaswag_zeroshot"}
    for name, r in results.items():
        assert r["n"] == 8, name
        assert 0.0 <= r["accuracy"] <= 1.0
        assert r["centered"] == pytest.approx((r["accuracy"] - r["baseline"]) / (1 - r["baseline"]))
    # A random model reproduces no LAMBADA word exactly, and is near chance on two-way choices.
    assert results["lambada_openai"]["accuracy"] == 0.0
    assert 0.0 <= results["copa"]["accuracy"] <= 1.0
    again = evaluate_core(model, tok, tasks[:1], max_per_task=8, progress=False)
    assert again["copa"] == results["copa"]  # deterministic subset and few-shot picks


# --------------------------------------------------------------------------------------- toy world


def test_toy_choices_fill_the_answer_sentence():
    world = build_world(*WORLD)
    for q in fact_questions(world, "test", 40, 0):
        prompts = choice_prompts(world, q)
        gold = prompts[q["answer_index"]]
        assert gold["context"].startswith(f"Q: {q['question']}\nA:")
        assert (gold["context"][len(f"Q: {q['question']}\nA: ") - 1 :] + gold["continuation"]).strip() == q["sentence"]
        assert len({p["context"] for p in prompts}) == 1 and len({p["continuation"] for p in prompts}) == 4
    job = next(q for q in fact_questions(world, "test", 200, 0) if q["attribute"] == "job")
    assert all(p["continuation"].split()[0] in ("a", "an") for p in choice_prompts(world, job))
    assert names_value("Jelo lives in Tifivale.", "tifivale") and not names_value("bored", "red")


def test_toy_eval_on_a_random_model(tok):
    result = evaluate_toy(tiny_gpt(tok.vocab_size), tok, build_world(*WORLD), n=12, progress=False)
    assert result["fact_mc"]["n"] == 12 and result["fact_mc"]["baseline"] == 0.25
    assert result["fact_completion"]["n"] == 12 and 0.0 <= result["fact_completion"]["accuracy"] <= 1.0
    assert len(result["fact_completion"]["examples"]) == 5


# ----------------------------------------------------------------------------------------- stage


def test_stage_writes_a_complete_eval_json(tmp_path, tok):
    data = tmp_path / "data"
    embedded = {
        "seed": WORLD[0],
        "n_entities": WORLD[1],
        "train_bytes": 40_000,
        "val_bytes": 20_000,
        "shard_bytes": 40_000,
    }
    build_data(build_section("data", {"source": "embedded", "rows_per_group": 16, "embedded": embedded}), data)
    model_path = tmp_path / "model.pt"
    save_model(model_path, tiny_gpt(tok.vocab_size, seq_len=64), {"stage": "pretrain", "step": 0})
    tok_path = tmp_path / "tok.model"
    tok_path.write_bytes(tok.__getstate__()["model_proto"])
    core_dir = tmp_path / "tasks"
    (core_dir / "eval_data/commonsense_reasoning").mkdir(parents=True)
    entry = {"label": "copa", "dataset_uri": "commonsense_reasoning/copa.jsonl", "num_fewshot": [1]}
    (core_dir / "core.yaml").write_text(yaml.safe_dump({"icl_tasks": [{**entry, "icl_task_type": "multiple_choice"}]}))
    (core_dir / "eval_meta_data.csv").write_text("Eval Task,Random baseline\ncopa,50.0\n")
    rows = [
        {
            "query": f"Pelo owns a pet number {i}, therefore",
            "choices": ["it barked.", "it sang."],
            "gold": i % 2,
        }
        for i in range(6)
    ]
    (core_dir / "eval_data/commonsense_reasoning/copa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {
        "base_eval": {
            "core_tasks": ["copa"],
            "core_data_dir": str(core_dir),
            "max_per_task": 4,
            "toy_questions": 8,
            "bpb_tokens": 1024,
        },
        "inputs": {"pretrain": "k1", "tokenizer": "k2", "data": "k3"},
    }
    out = tmp_path / "stage"
    stage_main(
        "base_eval",
        run,
        [
            str(out),
            "--config",
            json.dumps(config),
            "--execution",
            '{"base_eval": {"device": "cpu"}}',
            "--input",
            f"model={model_path}",
            "--input",
            f"tokenizer={tok_path}",
            "--input",
            f"data={data / 'manifest.json'}",
        ],
    )
    result = json.loads((out / "eval.json").read_text())
    assert set(result) >= {"val/bpb", "core", "core_metric", "toy", "samples", "model_meta"}
    # A random model spreads its guesses over the whole vocabulary: about log2(384) bits per token.
    assert 1.0 < result["val/bpb"] < 20.0
    assert set(result["core"]["copa"]) >= {"accuracy", "centered", "n"} and result["core"]["copa"]["n"] == 4
    assert result["core"]["copa"]["baseline"] == 0.5 and result["core"]["copa"]["fewshot"] == 1  # the bundle's
    assert result["core_metric"] == pytest.approx(result["core"]["copa"]["centered"])
    assert result["toy"]["fact_mc"]["n"] == 8 and result["toy"]["fact_completion"]["n"] == 8
    assert len(result["samples"]) == 5 and result["samples"][0].startswith("Once upon a time")
    assert result["model_meta"] == {"stage": "pretrain", "step": 0}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["device"] == "1xcpu" and meta["metrics"]["val/bpb"] == result["val/bpb"]
    assert meta["outputs"]["result"]["file"] == "eval.json" and meta["inputs"]["pretrain"] == "k1"
    assert (out / "config.yaml").is_file()
