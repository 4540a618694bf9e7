"""Chat/eval tasks on the real public samples (shared_data), generated tasks, hub layouts, registry errors."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hubserver import FakeHub, fake_hub_fixture  # noqa: F401  (provides `fake_hub`)

from llmstack.conversation import text_of, validate
from llmstack.tasks import TASKS, make_task, task_class
from llmstack.tasks.arc import ARC
from llmstack.tasks.chat_jsonl import ChatJSONL, SmolTalk
from llmstack.tasks.core import HellaSwag, build_prompts, centered, core_metric, load_bundle, load_core_task
from llmstack.tasks.gsm8k import GSM8K, extract_answer, parse_gsm8k_answer, parts_to_gsm8k, same_number
from llmstack.tasks.humaneval import HumanEval, extract_code
from llmstack.tasks.identity import Identity
from llmstack.tasks.mmlu import MMLU
from llmstack.tasks.spelling import LetterCount, SpellingBee, load_words

# ------------------------------------------------------------------------------------------ GSM8K


@pytest.fixture(scope="module")
def gsm8k_rows(shared_data):
    return {
        split: [json.loads(line) for line in (shared_data / "gsm8k" / f"{split}.jsonl").open()]
        for split in ("train", "test")
    }


def test_gsm8k_annotations_round_trip_on_every_real_row(gsm8k_rows):
    assert (len(gsm8k_rows["train"]), len(gsm8k_rows["test"])) == (7473, 1055)
    n_calls = 0
    for row in gsm8k_rows["train"] + gsm8k_rows["test"]:
        parts = parse_gsm8k_answer(row["answer"])
        assert parts_to_gsm8k(parts) == row["answer"]
        validate({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": parts}]})
        calls = [p for p in parts if p["type"] == "python"]
        assert len(calls) == row["answer"].count("<<")
        assert not any("<<" in p["text"] or ">>" in p["text"] for p in parts)
        assert parts[-1]["type"] == "text" and "#### " in parts[-1]["text"]
        n_calls += len(calls)
    assert n_calls > 20_000  # the tool calls really are extracted, not left in the text


def test_gsm8k_calculator_calls_compute_their_outputs(gsm8k_rows):
    """On the test rows, eval(expr) of arithmetic calls gives the recorded output (the source has a
    few wrong annotations, so nearly all, not all)."""
    checked = agree = 0
    for row in gsm8k_rows["test"]:
        parts = parse_gsm8k_answer(row["answer"])
        for call, output in zip(parts, parts[1:], strict=False):
            if call["type"] != "python" or not re.fullmatch(r"[\d.+\-*/() ]+", call["text"]):
                continue
            try:
                value, recorded = eval(call["text"]), float(output["text"])  # arithmetic only (regex)
            except (SyntaxError, ZeroDivisionError, ValueError):
                continue
            checked += 1
            agree += abs(value - recorded) <= 0.01 * max(1.0, abs(value))
    assert checked > 2000 and agree / checked > 0.97


def test_gsm8k_final_answers_on_real_rows(gsm8k_rows):
    for row in gsm8k_rows["train"] + gsm8k_rows["test"]:
        final = row["answer"].rsplit("\n", 1)[-1]
        assert final.startswith("#### ")
        assert extract_answer(row["answer"]) == final[5:].replace(",", "")
    assert extract_answer("so #### 1,234") == "1234"
    assert extract_answer("#### $-5.5") == "-5.5"
    assert extract_answer("#### 3 then later #### 4") == "4"
    assert extract_answer("the answer is 7") is None
    assert same_number("18", "18.00") and not same_number("18", "81") and not same_number(None, "1")


def test_gsm8k_task_and_evaluate(shared_data):
    task = GSM8K(split="test", path=str(shared_data / "gsm8k"))
    assert len(task) == 1055 and task.eval_type == "generative"
    conv = task[0]
    validate(conv)
    reference = text_of(conv["messages"][-1])
    assert task.evaluate(conv, reference) == 1.0
    assert task.evaluate(conv, f"I think #### {conv['answer']}.0") == 1.0
    assert task.evaluate(conv, f"#### {int(conv['answer']) + 1}") == 0.0
    assert task.evaluate(conv, conv["answer"]) == 0.0  # no "####": no answer
    capped = GSM8K(split="train", path=str(shared_data / "gsm8k" / "train.jsonl"), size=50, seed=3)
    again = GSM8K(split="train", path=str(shared_data / "gsm8k" / "train.jsonl"), size=50, seed=3)
    assert len(capped) == 50 and [c["answer"] for c in capped] == [c["answer"] for c in again]


# ------------------------------------------------------------------------------------- MMLU / ARC


def test_mmlu_parses_every_subject(shared_data):
    test = MMLU(split="test", path=str(shared_data / "mmlu"))
    dev = MMLU(split="dev", path=str(shared_data / "mmlu"))
    assert (len(test), len(dev)) == (10026, 280)
    assert len({r["subject"] for r in test.rows}) == 56 and "professional_law" not in {
        r["subject"] for r in test.rows
    }
    assert Counter(r["subject"] for r in dev.rows) == {s: 5 for s in {r["subject"] for r in dev.rows}}
    # letters follow the csv's 0-based answer column on every row
    expected = Counter()
    for f in (shared_data / "mmlu" / "test").glob("*.csv"):
        expected.update("ABCD"[int(rec[5])] for rec in list(csv.reader(f.open(newline="")))[1:])
    assert Counter(test[i]["answer"] for i in range(len(test))) == expected
    conv = test[0]
    validate(conv)
    assert conv["letters"] == ["A", "B", "C", "D"] and conv["messages"][1]["content"] == conv["answer"]
    assert "\nA. " in conv["messages"][0]["content"] and "\nD. " in conv["messages"][0]["content"]
    assert test.evaluate(conv, f" {conv['answer']}") == 1.0 and test.evaluate(conv, "E") == 0.0
    algebra = MMLU(split="test", path=str(shared_data / "mmlu"), subjects=["abstract_algebra"])
    assert len(algebra) == 80


def test_mmlu_reads_the_original_headerless_letter_layout(tmp_path):
    (tmp_path / "test").mkdir()
    rows = [
        ["What is 2+2?", "3", "4", "5", "6", "B"],
        ["Capital of France?", "Paris", "Rome", "Oslo", "Bern", "A"],
    ]
    with open(tmp_path / "test" / "trivia_test.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    task = MMLU(split="test", path=str(tmp_path))
    assert [task[i]["answer"] for i in range(2)] == ["B", "A"] and task[0]["subject"] == "trivia"
    with pytest.raises(ValueError, match="subjects"):
        MMLU(split="test", path=str(tmp_path), subjects=["nope"])


ARC_ROWS = {"ARC-Easy": {"train": 2251, "validation": 570, "test": 1902},
            "ARC-Challenge": {"train": 1119, "validation": 299, "test": 936}}  # fmt: skip


@pytest.mark.parametrize("subset", ["ARC-Easy", "ARC-Challenge"])
def test_arc_parses_real_files(shared_data, subset):
    for split, n in ARC_ROWS[subset].items():
        task = ARC(subset=subset, split=split, path=str(shared_data / "arc"))
        assert len(task) == n
        for i in range(len(task)):
            conv = task[i]
            assert conv["answer"] in conv["letters"] and 3 <= len(conv["letters"]) <= 5
    # a row labelled 1-4 in the source answers with the letter at the same position
    raw = [json.loads(line) for line in (shared_data / "arc" / f"{subset}-Train.jsonl").open()]
    task = ARC(subset=subset, split="train", path=str(shared_data / "arc"))
    numeric = [i for i, r in enumerate(raw) if r["question"]["choices"][0]["label"] == "1"]
    assert numeric
    for i in numeric:
        assert task[i]["answer"] == "ABCDE"[int(raw[i]["answerKey"]) - 1]


def test_arc_registry_names(shared_data):
    easy = make_task("arc_easy", split="validation", path=str(shared_data / "arc"))
    hard = make_task("arc_challenge", split="validation", path=str(shared_data / "arc"))
    assert (len(easy), len(hard)) == (570, 299) and easy.name == "arc_easy"


# --------------------------------------------------------------------------------------- HumanEval


def test_humaneval_canonical_solutions_pass_and_wrong_ones_fail(shared_data):
    task = HumanEval(path=str(shared_data / "humaneval" / "HumanEval.jsonl.gz"), timeout_s=10.0)
    assert len(task) == 131
    convs = [task[i] for i in range(20)]
    with ThreadPoolExecutor(max_workers=2) as pool:  # each run is its own subprocess
        scores = list(pool.map(lambda c: task.evaluate(c, c["messages"][-1]["content"]), convs))
    assert scores == [1.0] * 20
    conv = convs[0]
    body_only = (
        conv["messages"][-1]["content"].removeprefix("```python\n" + conv["prompt"]).removesuffix("```")
    )
    assert task.evaluate(conv, body_only) == 1.0  # raw body continuing the stub also works
    assert task.evaluate(conv, "```python\n    return []\n```") == 0.0
    assert task.evaluate(conv, "    return [") == 0.0  # syntax error


def test_extract_code():
    assert extract_code("Here:\n```python\ndef f():\n    return 1\n```\nDone.") == "def f():\n    return 1\n"
    assert extract_code("```\nx = 1\n```\n```python\ny = 2\n```") == "y = 2\n"
    assert extract_code("```py\nz = 3\n") == "z = 3\n"  # unclosed fence: a reply cut off mid-code
    assert extract_code("    return x + 1\n") == "    return x + 1\n"


# --------------------------------------------------------------------------------- chat conversations


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_chat_jsonl_keeps_valid_and_counts_malformed(tmp_path):
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    system = {"messages": [{"role": "system", "content": "be brief"}] + good["messages"]}
    rows = [
        good,
        system,
        {"messages": [{"role": "assistant", "content": "I start"}, {"role": "user", "content": "?"}]},
        {"messages": [{"role": "user", "content": "only a question"}]},
        {"messages": [{"role": "user", "content": "   "}, {"role": "assistant", "content": "x"}]},
        {"messages": "not a list"},
        {"text": "no known format"},
    ]
    task = ChatJSONL(path=str(_write_jsonl(tmp_path / "chats.jsonl", rows)))
    assert len(task) == 2 and task[0] == good and task[1]["messages"][0]["role"] == "system"
    assert task.skipped == 5 and sum(task.skip_reasons.values()) == 5
    assert task.skip_reasons["conversation does not end with an assistant message"] == 1


def test_chat_jsonl_reads_dolly_hh_and_self_instruct(shared_data, tmp_path):
    dolly = ChatJSONL(path=str(shared_data / "sft" / "dolly_hhrlhf_train_small.jsonl"))
    assert len(dolly) == 1000 and dolly.skipped == 0
    first = dolly[0]["messages"]
    assert first[0]["content"] == "what is kangen water?" and first[1]["content"].startswith("Kangen water")
    assert not any("###" in dolly[i]["messages"][0]["content"] for i in range(len(dolly)))
    seeds = ChatJSONL(path=str(shared_data / "sft" / "self-instruct" / "seed_tasks.jsonl"))
    assert len(seeds) == 175 and seeds.skipped == 0
    hh_prompt = "Human: hi there\n\nAssistant: Hello! How can I help?\n\nHuman: name a colour\n\nAssistant:"
    hh = {"prompt": hh_prompt, "response": " Blue."}
    alpaca_prompt = (
        "Below is an instruction.\n\n### Instruction:\nAdd.\n\n### Input:\n2 and 3\n\n### Response:\n"
    )
    alpaca = {"prompt": alpaca_prompt, "response": "5"}
    task = ChatJSONL(path=str(_write_jsonl(tmp_path / "pairs.jsonl", [hh, alpaca])), format="prompt_response")
    assert [m["content"] for m in task[0]["messages"]] == [
        "hi there",
        "Hello! How can I help?",
        "name a colour",
        "Blue.",
    ]
    assert [m["content"] for m in task[1]["messages"]] == ["Add.\n\n2 and 3", "5"]


def _smoltalk_parquet(path, n, bad_every=0):
    rows = []
    for i in range(n):
        messages = [
            {"role": "user", "content": f"question {i}"},
            {"role": "assistant", "content": f"answer {i}"},
        ]
        if bad_every and i % bad_every == 0:
            messages = messages[:1]  # ends with the user: skipped
        rows.append({"messages": messages})
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_smoltalk_local_parquet(tmp_path):
    task = SmolTalk(path=str(_smoltalk_parquet(tmp_path / "s.parquet", 30, bad_every=10)))
    assert len(task) == 27 and task.skipped == 3
    assert task[0]["messages"][1]["content"] == "answer 1"


def test_hub_layouts_via_fake_hub(fake_hub, tmp_path):
    """With path empty, tasks fetch the standard hub files (names and columns as on the hub)."""
    shard_rows = 20
    for i in range(4):
        shard = _smoltalk_parquet(tmp_path / f"t{i}.parquet", shard_rows)
        fake_hub.add_file(
            "HuggingFaceTB/smol-smoltalk", f"data/train-{i:05d}-of-00004.parquet", shard.read_bytes()
        )
    small = SmolTalk(split="train", size=30, seed=1)
    assert len(small) == 30
    assert fake_hub.body_downloads("data/train-00002-of-00004.parquet") == 0  # stopped after 2 shards

    def add(repo, name, rows):
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / "x.parquet")
        fake_hub.add_file(repo, name, (tmp_path / "x.parquet").read_bytes())

    arc_row = {
        "id": "q1",
        "question": "Which?",
        "choices": {"text": ["a", "b", "c"], "label": ["1", "2", "3"]},
    }
    humaneval_row = {
        "task_id": "HumanEval/0",
        "prompt": 'def f():\n    """One."""\n',
        "entry_point": "f",
        "canonical_solution": "    return 1\n",
        "test": "def check(c):\n    assert c() == 1\n",
    }
    add(
        "openai/gsm8k",
        "main/test-00000-of-00001.parquet",
        [{"question": "1+1?", "answer": "<<1+1=2>>2\n#### 2"}],
    )
    add("allenai/ai2_arc", "ARC-Challenge/train-00000-of-00001.parquet", [{**arc_row, "answerKey": "3"}])
    mmlu_row = {"question": "Q?", "subject": "anatomy", "choices": ["w", "x", "y", "z"], "answer": 3}
    add("cais/mmlu", "all/validation-00000-of-00001.parquet", [mmlu_row])
    add("openai/openai_humaneval", "openai_humaneval/test-00000-of-00001.parquet", [humaneval_row])
    assert make_task("gsm8k", split="test")[0]["answer"] == "2"
    assert make_task("arc_challenge", split="train")[0]["answer"] == "C"
    assert make_task("mmlu", split="validation")[0]["answer"] == "D"
    he = make_task("humaneval")
    assert he.evaluate(he[0], he[0]["messages"][1]["content"]) == 1.0


# --------------------------------------------------------------------------------- generated tasks


def test_spelling_tasks_are_deterministic_and_self_consistent(shared_data):
    words = load_words(str(shared_data / "words" / "words_alpha.txt"))
    assert len(words) > 300_000 and all(w.isalpha() and w.islower() for w in words[:1000])
    words = words[::100]  # a spread-out sample keeps the test fast
    spell, again = (
        SpellingBee(split="train", size=200, words=words),
        SpellingBee(split="train", size=200, words=words),
    )
    assert [spell[i] for i in range(5)] == [again[i] for i in range(5)]
    assert spell[0] != SpellingBee(split="test", size=200, words=words)[0]
    for conv in spell:
        validate(conv)
        assert spell.evaluate(conv, conv["messages"][1]["content"]) == 1.0
    conv = spell[0]
    assert spell.evaluate(conv, "-".join(conv["answer"][::-1]) + "x") == 0.0
    count = LetterCount(split="train", size=300, words=words)
    zeros = 0
    for conv in count:
        validate(conv)
        parts = conv["messages"][1]["content"]
        call, output = parts[1], parts[2]
        assert (call["type"], output["type"]) == ("python", "python_output")
        assert str(eval(call["text"])) == output["text"] == conv["answer"]  # the tool call is right
        assert count.evaluate(conv, text_of(conv["messages"][1])) == 1.0
        assert count.evaluate(conv, f"#### {int(conv['answer']) + 1}") == 0.0
        zeros += conv["answer"] == "0"
    assert 0 < zeros < 150  # absent letters occur, but most questions count letters that are there


def test_spelling_words_from_list_file_and_default(tmp_path):
    (tmp_path / "w.txt").write_text("Apple\r\nbanana\r\nx\r\nno-dash\r\n")
    assert load_words(str(tmp_path / "w.txt")) == ["apple", "banana"]
    with pytest.raises(FileNotFoundError, match="words="):
        load_words(str(tmp_path / "missing.txt"))
    pytest.importorskip("llmstack.data.toyworld")
    default = LetterCount(size=10)
    assert default.words and len(default) == 10


def test_identity_conversations():
    task = Identity(size=300, name="Zed-1", maker="the Example Lab")
    assert len(task) == 300 and task[7] == Identity(size=300, name="Zed-1", maker="the Example Lab")[7]
    questions = set()
    for conv in task:
        validate(conv)
        questions.update(m["content"] for m in conv["messages"] if m["role"] == "user")
    replies = " ".join(m["content"] for conv in task for m in conv["messages"] if m["role"] == "assistant")
    assert "Zed-1" in replies and "the Example Lab" in replies and "The Example Lab" in replies
    assert len(questions) > 100  # phrasings, greetings and casing vary


# ------------------------------------------------------------------------------------------ CORE

CORE_ROWS = {"arc_easy": 1902, "arc_challenge": 938, "jeopardy": 1695, "bigbench_qa_wikidata": 16256,
             "copa": 80, "commonsense_qa": 976, "piqa": 1470, "openbook_qa": 400, "lambada_openai": 4122,
             "hellaswag": 8040, "winograd": 218, "winogrande": 1013, "bigbench_language_identification": 8000,
             "bigbench_dyck_languages": 800, "agi_eval_lsat_ar": 184, "bigbench_cs_algorithms": 1056,
             "bigbench_operators": 168, "bigbench_repeat_copy_logic": 25, "boolq": 2616}  # fmt: skip
# label: (file under shared/data, icl_task_type, few-shot count, random baseline %, delimiter), from
# SOURCES.md ("not listed" baselines: 25 for 4-way language identification, else 0).
_WK, _CR, _LU = "core/world_knowledge/", "core/commonsense_reasoning/", "core/language_understanding/"
_SP, _MC, _LM, _A = "core/symbolic_problem_solving/", "multiple_choice", "language_modeling", "\nAnswer: "
SHARED_META = {
    "arc_easy": (_WK + "arc_easy.jsonl", _MC, 3, 25, _A),
    "arc_challenge": (_WK + "arc_challenge.jsonl", _MC, 3, 25, _A),
    "jeopardy": (_WK + "jeopardy_all.jsonl", _LM, 3, 0, _A),
    "bigbench_qa_wikidata": (_WK + "bigbench_qa_wikidata.jsonl", _LM, 3, 0, " "),
    "copa": (_CR + "copa.jsonl", _MC, 0, 50, " "), "commonsense_qa": (_CR + "commonsense_qa.jsonl", _MC, 0, 25, " "),
    "piqa": (_CR + "piqa.jsonl", _MC, 0, 50, _A), "openbook_qa": (_CR + "openbook_qa.jsonl", _MC, 10, 25, " "),
    "lambada_openai": (_LU + "lambada_openai.jsonl", _LM, 0, 0, " "),
    "hellaswag": ("hellaswag/hellaswag_val_full.txt.bz2", _MC, 10, 25, " "),
    "winograd": (_LU + "winograd_wsc.jsonl", "schema", 3, 50, " "),
    "winogrande": (_LU + "winogrande.jsonl", "schema", 5, 50, " "),
    "bigbench_language_identification": (_LU + "bigbench_language_identification.jsonl", _MC, 10, 25, " "),
    "bigbench_dyck_languages": (_SP + "bigbench_dyck_languages.jsonl", _LM, 5, 0, " "),
    "agi_eval_lsat_ar": (_SP + "agi_eval_lsat_ar.jsonl", _MC, 5, 25, " "),
    "bigbench_cs_algorithms": (_SP + "bigbench_cs_algorithms.jsonl", _LM, 10, 0, " "),
    "bigbench_operators": (_SP + "bigbench_operators.jsonl", _LM, 3, 0, " "),
    "bigbench_repeat_copy_logic": (_SP + "bigbench_repeat_copy_logic.jsonl", _LM, 10, 0, " "),
    "boolq": ("core/reading_comprehension/boolq.jsonl", _MC, 0, 50, _A),
}  # fmt: skip


@pytest.fixture(scope="module")
def core_bundle(shared_data, tmp_path_factory):
    """An eval-bundle folder over the shared CORE files (symlinks) with core.yaml / eval_meta_data.csv."""
    import yaml

    root = tmp_path_factory.mktemp("eval_bundle")
    tasks, csv_lines = [], ["Eval Task,Random baseline"]
    for label, (path, kind, shots, base, delim) in SHARED_META.items():
        (root / "eval_data" / path).parent.mkdir(parents=True, exist_ok=True)
        (root / "eval_data" / path).symlink_to(shared_data / path)
        tasks.append({"label": label, "dataset_uri": path, "num_fewshot": [shots], "icl_task_type": kind,
                      "continuation_delimiter": delim})  # fmt: skip
        csv_lines.append(f"{label},{base}")
    (root / "core.yaml").write_text(yaml.safe_dump({"icl_tasks": tasks}))
    (root / "eval_meta_data.csv").write_text("\n".join(csv_lines) + "\n")
    return root


@pytest.mark.parametrize("label", sorted(CORE_ROWS))
def test_core_tasks_parse_real_files(core_bundle, label):
    task = load_core_task(label, core_bundle)
    info = task.info
    assert len(task) == CORE_ROWS[label]
    for ex in task.examples():
        assert ex["kind"] == info.kind
        n = len(ex["contexts"] if ex["kind"] == "schema" else ex["continuations"])
        assert 0 <= ex["gold"] < n and (n >= 2 or ex["kind"] == "lm")
    k = info.num_fewshot
    prompts = task.prompts(5, k=min(k, 3))
    for p in prompts:
        assert not p["context"].endswith(" ")  # the boundary space travels with the continuation
    assert task.prompts(5, k=min(k, 3)) == prompts  # deterministic few-shot draw


def test_hellaswag_layout(shared_data):
    task = HellaSwag(shared_data / "hellaswag" / "hellaswag_val_full.txt.bz2")
    ex = task.examples()[0]
    assert len(task) == 8040 and all(len(e["continuations"]) == 4 for e in task.examples())
    assert ex["contexts"][0].startswith("Clean and jerk: ") and ex["gold"] == 3
    assert ex["continuations"][3] == "stands and lifts the weight over her head."


def test_build_prompts_and_fewshot():
    mc = {"kind": "mc", "contexts": ["Q: sky?"], "continuations": ["blue", "green"], "gold": 0}
    schema = {"kind": "schema", "contexts": ["Ann hit Bo because Ann", "Ann hit Bo because Bo"],
              "continuations": ["was angry."], "gold": 0}  # fmt: skip
    lm = {"kind": "lm", "contexts": ["2+2="], "continuations": ["4"], "gold": 0}
    out = build_prompts(mc, [lm], "\nAnswer: ")
    assert out == [
        {"context": "2+2=\nAnswer: 4\n\nQ: sky?\nAnswer:", "continuation": " blue"},
        {"context": "2+2=\nAnswer: 4\n\nQ: sky?\nAnswer:", "continuation": " green"},
    ]
    assert [p["context"] for p in build_prompts(schema, [], " ")] == schema["contexts"]
    assert build_prompts(lm, [schema], " ")[0]["context"] == "Ann hit Bo because Ann was angry.\n\n2+2="
    assert build_prompts({**lm, "contexts": ["Answer: "]}, [], " ")[0] == {
        "context": "Answer:",
        "continuation": " 4",
    }
    assert centered(0.25, 0.25) == 0.0 and centered(1.0, 0.5) == 1.0 and centered(0.4, 0.0) == 0.4



def test_core_metric_uses_the_bundle_baselines(core_bundle):
    bundle = load_bundle(core_bundle)
    assert core_metric({"copa": 0.75, "lambada_openai": 0.5}, bundle) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        core_metric({"not_a_task": 0.5}, bundle)


def test_core_fewshot_excludes_the_item(core_bundle):
    task = load_core_task("copa", core_bundle)
    for index in range(10):
        shots = task.fewshot(index, k=5)
        assert len(shots) == 5 and task.examples()[index] not in shots


# -------------------------------------------------------------------------------------- registry


def test_registry_resolves_every_name():
    for name in TASKS:
        if name.startswith("toy"):
            pytest.importorskip("llmstack.tasks.toyworld")
        assert issubclass(task_class(name), object)


def test_unknown_task_and_option_and_missing_file_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match=r"unknown task 'gsm9k'; valid tasks: .*gsm8k.*mmlu") as err:
        make_task("gsm9k")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"task 'identity' got unknown option\(s\) \['nmae'\]"):
        make_task("identity", nmae="x")
    missing = tmp_path / "nope.jsonl"
    for name in ("gsm8k", "mmlu", "arc_easy", "humaneval", "chat_jsonl", "smoltalk"):
        with pytest.raises(FileNotFoundError, match=rf"{name}: path='{missing}' does not exist"):
            make_task(name, path=str(missing))
    with pytest.raises(ValueError, match="chat_jsonl: path is empty"):
        make_task("chat_jsonl")
