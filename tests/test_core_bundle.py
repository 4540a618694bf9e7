"""CORE as nanochat defines it, on a tiny bundle laid out like DCLM's: baselines and few-shot counts
from core.yaml / eval_meta_data.csv, an oracle scoring 1.0, a first-choice guesser scoring the
baselines, the download (verified, atomic, resumable) from a local HTTP server, plan-time failures."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
import yaml

from llmstack.data.download import DownloadError, download_url
from llmstack.evaluate.core_eval import core_metric, ensure_bundle, evaluate_core, load_core_tasks
from llmstack.model import GPTConfig
from llmstack.plan import plan_runs
from llmstack.tasks.core import build_prompts, check_core_config, load_bundle

FRUITS = ["apple", "banana", "cherry", "damson"]


def task_rows() -> dict[str, list[dict]]:
    mc = [{"query": f"Question {i}: which fruit is number {i % 4}?", "choices": FRUITS, "gold": i % 4}
          for i in range(8)]  # fmt: skip
    schema = [
        {"context_options": [f"Ann {i} thanked Bo because Ann", f"Ann {i} thanked Bo because Bo"],
         "continuation": f"had helped {i} times.", "gold": i % 2}
        for i in range(6)
    ]  # fmt: skip
    lm = [{"context": f"Count {i}, {i + 1},", "continuation": f"{i + 2}"} for i in range(5)]
    return {"fruit_mc": mc, "ann_schema": schema, "count_lm": lm}


# label: (dataset_uri, icl_task_type, num_fewshot, Random baseline in percent, delimiter or None)
META = {
    "fruit_mc": ("world_knowledge/fruit_mc.jsonl", "multiple_choice", 2, 25.0, "\nAnswer: "),
    "ann_schema": ("language_understanding/ann_schema.jsonl", "schema", 1, 50.0, None),
    "count_lm": ("symbolic_problem_solving/count_lm.jsonl", "language_modeling", 0, 0.0, None),
}


def write_bundle(root: Path, meta: dict = META, rows: dict | None = None) -> Path:
    """A bundle folder as nanochat unzips it: core.yaml, eval_meta_data.csv, eval_data/<uri>."""
    rows = task_rows() if rows is None else rows
    tasks = []
    for label, (uri, kind, shots, _, delim) in meta.items():
        entry = {"label": label, "dataset_uri": uri, "num_fewshot": [shots], "icl_task_type": kind}
        tasks.append({**entry, "continuation_delimiter": delim} if delim is not None else entry)
        if label in rows:
            (root / "eval_data" / uri).parent.mkdir(parents=True, exist_ok=True)
            (root / "eval_data" / uri).write_text("".join(json.dumps(r) + "\n" for r in rows[label]))
    (root / "core.yaml").write_text(yaml.safe_dump({"icl_tasks": tasks}))
    with open(root / "eval_meta_data.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Eval Task", "Task Category", "#shots", "Random baseline", "Description"])
        for label, (uri, _, shots, base, _) in meta.items():
            w.writerow([label, uri.split("/")[0], shots, base, f"{label}, a test task"])
    return root


class CharTok:
    """One token per character (id = byte + 1), BOS = 0: decoding a row gives its exact text."""

    bos_id, vocab_size = 0, 257

    def encode(self, text: str) -> list[int]:
        return [b + 1 for b in text.encode()]

    def decode(self, ids: list[int]) -> str:
        return bytes(i - 1 for i in ids if i).decode()


class LookupLM(torch.nn.Module):
    """Predicts every next token exactly in rows that end with a favoured text, uniformly elsewhere:
    a favoured candidate gets mean loss ~0 and greedy-reproduces; any other gets log(257)."""

    def __init__(self, favoured: set[str]):
        super().__init__()
        self.config = GPTConfig(vocab_size=257, seq_len=4096, n_layer=1, n_embd=2, n_head=1, n_kv_head=1)
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the scorer a device to read
        self.favoured, self.tok = favoured, CharTok()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*idx.shape, 257)
        for b, row in enumerate(idx.tolist()):
            n = max(i for i, t in enumerate(row) if t or i == 0) + 1  # right padding is BOS (0)
            if any(self.tok.decode(row[:n]).endswith(f) for f in self.favoured):
                logits[b, torch.arange(n - 1), torch.tensor(row[1:n], dtype=torch.long)] = 30.0
        return logits + self.anchor


def candidate_texts(tasks, pick) -> set[str]:
    """Full text (context + continuation, no shots) of the candidate `pick(example)` of each example."""
    out = set()
    for t in tasks:
        for ex in t.task.examples():
            index = pick(ex)
            if index is not None:
                p = build_prompts(ex, [], t.task.info.delimiter)[index]
                out.add(p["context"] + p["continuation"])
    return out


def csv_baselines(root: Path) -> dict[str, float]:
    with open(root / "eval_meta_data.csv", newline="") as f:
        return {r["Eval Task"]: float(r["Random baseline"]) / 100 for r in csv.DictReader(f)}


# ------------------------------------------------------------------------------------- metadata


def test_bundle_metadata_comes_from_core_yaml_and_the_csv(tmp_path):
    bundle = load_bundle(write_bundle(tmp_path))
    assert list(bundle) == ["fruit_mc", "ann_schema", "count_lm"]
    mc = bundle["fruit_mc"]
    assert (mc.kind, mc.num_fewshot, mc.baseline, mc.delimiter) == ("mc", 2, 0.25, "\nAnswer: ")
    assert (bundle["ann_schema"].kind, bundle["ann_schema"].delimiter) == ("schema", " ")
    tasks = load_core_tasks(["all"], tmp_path)
    assert [(t.name, t.fewshot, t.baseline) for t in tasks] == [("fruit_mc", 2, 0.25), ("ann_schema", 1, 0.5),
                                                                ("count_lm", 0, 0.0)]  # fmt: skip
    assert load_core_tasks([], None) == []


def test_oracle_scores_core_one(tmp_path):
    tasks = load_core_tasks(["all"], write_bundle(tmp_path))
    oracle = LookupLM(candidate_texts(tasks, lambda ex: ex["gold"]))
    results = evaluate_core(oracle, CharTok(), tasks, max_per_task=0, progress=False)
    assert all(r["accuracy"] == 1.0 and r["centered"] == 1.0 for r in results.values())
    assert core_metric(results) == 1.0


@pytest.mark.parametrize("mc_baseline", [25.0, 10.0])
def test_first_choice_scores_what_the_baselines_predict(tmp_path, mc_baseline):
    meta = {**META, "fruit_mc": (*META["fruit_mc"][:3], mc_baseline, META["fruit_mc"][4])}
    root = write_bundle(tmp_path, meta)
    tasks = load_core_tasks(["all"], root)
    # Picks candidate 0 of every choice; knows no language-modelling answer (chance there is 0).
    guesser = LookupLM(candidate_texts(tasks, lambda ex: 0 if ex["kind"] != "lm" else None))
    results = evaluate_core(guesser, CharTok(), tasks, max_per_task=0, progress=False)
    rows, b = task_rows(), csv_baselines(root)
    for label, r in results.items():
        first = sum(row.get("gold", 1) == 0 for row in rows[label]) / len(rows[label])  # lm rows: never
        assert r["accuracy"] == pytest.approx(first) and r["baseline"] == b[label]
        assert r["centered"] == pytest.approx((first - b[label]) / (1 - b[label]))  # nanochat's formula
    assert [results[k]["accuracy"] for k in META] == [0.25, 0.5, 0.0]
    expected = sum((results[k]["accuracy"] - b[k]) / (1 - b[k]) for k in META) / 3
    assert core_metric(results) == pytest.approx(expected)
    if mc_baseline == 25.0:  # uniform golds: the guesser sits exactly at chance
        assert core_metric(results) == pytest.approx(0.0)


# ------------------------------------------------------------------------------------ plan time


def one_line_error(fn, *args, match: str) -> str:
    with pytest.raises(ValueError, match=match) as err:
        fn(*args)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_plan_time_failures(tmp_path, monkeypatch):
    root = write_bundle(tmp_path / "bundle")
    check_core_config(["fruit_mc", "count_lm"], str(root))  # fine
    check_core_config([], "")  # no CORE: nothing to check
    one_line_error(check_core_config, ["fruit_mcq"], str(root), match=r"unknown CORE task\(s\) \['fruit_mcq'\]")
    too_many = {**META, "count_lm": (*META["count_lm"][:2], 5, 0.0, None)}  # 5 shots from 5 rows
    bad = write_bundle(tmp_path / "bad", too_many)
    one_line_error(check_core_config, ["count_lm"], str(bad), match="5 few-shot examples but .* has 5 rows")
    one_line_error(check_core_config, ["all"], str(tmp_path), match="holds no core.yaml")
    # Absent and offline: the planner stops before any job, naming both fixes.
    monkeypatch.setenv("LLMSTACK_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setenv("LLMSTACK_OFFLINE", "1")
    msg = one_line_error(plan_runs, "tiny", None, "base_eval.core_tasks=[all]", match="cannot be downloaded")
    assert "LLMSTACK_OFFLINE" in msg and "base_eval.core_data_dir=" in msg and "base_eval.core_tasks=[]" in msg
    plan_runs("tiny", overrides=f"base_eval.core_tasks=[all] base_eval.core_data_dir={root}")  # on disk: fine


# ------------------------------------------------------------------------------------- download


class BundleServer:
    """Serves one file on 127.0.0.1 with HTTP Range; `cut_next` bodies stop half-way (a dropped stream)."""

    def __init__(self, data: bytes):
        self.data, self.cut_next, self.ranges = data, 0, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
                body = server.data[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(server.data) - 1}/{len(server.data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_next:
                    server.cut_next -= 1
                    body = body[: len(server.data) // 2 - start]
                    self.close_connection = True
                self.wfile.write(body)
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/eval_bundle.zip"


@pytest.fixture
def served_bundle(tmp_path, monkeypatch):
    folder = write_bundle(tmp_path / "src" / "eval_bundle")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # like the public zip: one top-level eval_bundle/ folder
        for p in sorted(folder.rglob("*")):
            z.write(p, p.relative_to(folder.parent).as_posix())
        z.writestr("eval_bundle/filler.bin", bytes(range(256)) * 800)  # 200 kB: halves worth resuming
    data = buf.getvalue()
    server = BundleServer(data)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv("LLMSTACK_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield server, hashlib.sha256(data).hexdigest()
    server.httpd.shutdown()
    server.httpd.server_close()


def test_download_resumes_a_partial_file_and_verifies(tmp_path, served_bundle):
    server, sha = served_bundle
    dest = tmp_path / "dl" / "eval_bundle.zip"
    dest.parent.mkdir()
    half = len(server.data) // 2
    (tmp_path / "dl" / "eval_bundle.zip.part").write_bytes(server.data[:half])  # an interrupted run
    assert download_url(server.url, dest, sha, show_progress=False).read_bytes() == server.data
    assert server.ranges == [f"bytes={half}-"] and not dest.with_name("eval_bundle.zip.part").exists()
    assert download_url(server.url, dest, sha) == dest and len(server.ranges) == 1  # verified: no request


def test_dropped_stream_is_resumed_and_a_wrong_checksum_fails(tmp_path, served_bundle):
    server, sha = served_bundle
    server.cut_next = 1
    dest = tmp_path / "a.zip"
    assert download_url(server.url, dest, sha, backoff_s=0.01, show_progress=False).read_bytes() == server.data
    assert server.ranges[0] is None and server.ranges[1].startswith("bytes=") and len(server.ranges) == 2
    with pytest.raises(DownloadError, match="sha256 .* != expected 000000000000") as err:
        download_url(server.url, tmp_path / "b.zip", "0" * 64, show_progress=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "b.zip").exists() and not (tmp_path / "b.zip.part").exists()


def test_ensure_bundle_downloads_into_the_cache_atomically(tmp_path, served_bundle, monkeypatch):
    server, sha = served_bundle
    monkeypatch.setenv("LLMSTACK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LLMSTACK_EVAL_BUNDLE_URL", server.url)
    monkeypatch.delenv("LLMSTACK_EVAL_BUNDLE_SHA256", raising=False)
    one_line_error(ensure_bundle, "", match="LLMSTACK_EVAL_BUNDLE_SHA256 is not a sha256")
    monkeypatch.setenv("LLMSTACK_EVAL_BUNDLE_SHA256", sha)
    check_core_config(["all"], "")  # absent but reachable: the plan passes, the stage downloads
    root = ensure_bundle("", show_progress=False)
    assert root == tmp_path / "cache" / "eval_bundle" and list(load_bundle(root)) == list(META)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["eval_bundle"]  # no zip, no staging
    check_core_config(["all"], "")  # now on disk: labels and shots checked against it
    assert ensure_bundle("") == root and len(server.ranges) == 1  # present: no second download
