"""The report builds from a tiny run's outputs: tables from the files, valid PNGs, tolerant of gaps."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
import yaml

from llmstack import cli
from llmstack.report import (
    duration,
    ema,
    fenced,
    load_run,
    name_overrides,
    prices,
    read_log,
    regenerate,
    smoothing,
    stage_cost,
    write_report,
    write_sweep,
)
from llmstack.stages import report as report_stage
from llmstack.stages import sweep_report as sweep_stage

TASKS = ["toyworld_mc", "toy_arithmetic"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def write_stage(root: Path, stage: str, key: str, config: dict, files: dict, seconds: float, device: str = "") -> str:
    d = root / "artifacts" / stage / key
    d.mkdir(parents=True, exist_ok=True)  # a sweep shares its data and tokenizer folders
    (d / "config.yaml").write_text(yaml.safe_dump(config))
    prov = {
        "llmstack": "0.1.0",
        "git": "abc1234",
        "python": "3.11.7",
        "host": "testhost",
        "platform": "Linux-test",
        "started": "2026-11-25 10:00:00 UTC",
    }
    log = [
        f"llmstack.launch: python -m llmstack.stages.{stage} ...",
        f"[{stage}] {json.dumps(prov)}",
        f"{stage}: 50%|#####     | 1/2\r{stage}: 100%|##########| 2/2",
        f"[{stage}] done in {seconds}s",
    ]
    (d / f"{stage}.log").write_text("\n".join(log) + "\n")
    for name, body in files.items():
        if name.endswith(".jsonl"):
            (d / name).write_text("".join(json.dumps(e) + "\n" for e in body))
        else:
            (d / name).write_text(json.dumps(body))
    return f"artifacts/{stage}/{key}"


def train_history(steps: int, loss0: float) -> list[dict]:
    hist = []
    for s in range(steps):
        hist.append(
            {
                "step": s,
                "train/loss": loss0 - 0.1 * s,
                "lr_mult": 1.0,
                "tok_per_s": 5000.0,
                "mfu": 0.04,
                "dt": 1.6,
            }
        )
        if s % 4 == 0:
            hist.append({"step": s, "val/loss": loss0 - 0.08 * s, "val/bpb": (loss0 - 0.08 * s) / 2.5})
    return [*hist, {"step": steps, "samples": ["Once upon a time there"]}]


def train_metrics(stage: str, params: int, bpb: float, device: str = "1xcpu") -> dict:
    m = {
        "stage": stage,
        "steps": 12,
        "params": params,
        "device": device,
        "dtype": "torch.bfloat16",
        "train/loss_first": 8.3,
        "train/loss_last": 7.2,
        "val/loss": 7.0,
        "val/bpb": bpb,
        "val/bpb_first": 3.31,
        "tok_per_s": 5123.4,
        "mfu": 0.042,
        "train_time_s": 19.5,
        "samples": ["Once upon a time there was"],
    }
    if stage != "pretrain":
        m["mixture_counts"] = {"toyworld_chat": 40, "toy_arithmetic": 15}
        m["quick_eval"] = {"toyworld_mc": {"accuracy": 0.41, "n": 20}}
    return m


def chat_eval(stage: str, acc: float) -> dict:
    tasks = {
        "toyworld_mc": {"accuracy": acc, "n": 50, "baseline": 0.25, "centered": (acc - 0.25) / 0.75},
        "toy_arithmetic": {
            "accuracy": acc / 2,
            "n": 40,
            "baseline": 0.0,
            "centered": acc / 2,
            "examples": [{"prompt": "What is 7 + 5?", "reply": "7 + 5 = 12", "score": 1.0}],
        },
    }
    return {
        "model_stage": stage,
        "tasks": tasks,
        "chatcore": sum(t["centered"] for t in tasks.values()) / len(tasks),
    }


def make_run(
    root: Path, name: str, depth: int = 4, with_rl: bool = True, device: str = "1xcpu", sft_lr: float = 1e-4
) -> Path:
    """A schema-true run folder: run.json plus every stage folder it names."""
    k = f"{depth:02d}"
    stages = {
        "data": write_stage(
            root,
            "data",
            "d0",
            {"data": {"source": "embedded"}, "inputs": {}},
            {
                "manifest.json": {
                    "source": {"kind": "embedded", "seed": 0},
                    "shards": [{"file": "a"}, {"file": "b"}],
                    "val": {"file": "val.parquet", "rows": 501, "text_bytes": 500_123},
                    "rows": 23_860,
                    "text_bytes": 24_012_345,
                }
            },
            2.3,
        ),
        "tokenizer": write_stage(
            root,
            "tokenizer",
            "t0",
            {"tokenizer": {"vocab_size": 4096}},
            {"tokenizer.json": {"vocab_size": 4096, "bytes_per_token": 3.645}},
            0.8,
        ),
        "pretrain": write_stage(
            root,
            "pretrain",
            f"p{k}",
            {"model": {"depth": depth}, "pretrain": {"max_steps": 12}},
            {
                "metrics.json": train_metrics("pretrain", 1_000_000 * depth, 2.0 - depth / 10, device),
                "metrics.jsonl": train_history(12, 8.3),
            },
            3600.0,
        ),
        "base_eval": write_stage(
            root,
            "base_eval",
            f"b{k}",
            {"base_eval": {"core_tasks": []}},
            {
                "eval.json": {
                    "val/bpb": 1.9 - depth / 10,
                    "core": {"copa": {"accuracy": 0.55, "centered": 0.1, "n": 100}},
                    "core_metric": 0.1234,
                    "toy": {"fact_mc": {"accuracy": 0.3, "n": 200}},
                    "samples": ["The capital of Veloria is Ostra"],
                }
            },
            30.0,
        ),
    }
    for i, stage in enumerate(["midtrain", "sft"]):
        stages[stage] = write_stage(
            root,
            stage,
            f"{stage[0]}{k}",
            {stage: {"num_epochs": 1, "lr": sft_lr if stage == "sft" else 2e-4}},
            {
                "metrics.json": train_metrics(stage, 1_000_000 * depth, 1.2, device),
                "metrics.jsonl": train_history(8, 4.0 - i),
            },
            120.0,
        )
        stages[f"eval/{stage}"] = write_stage(
            root,
            "eval",
            f"e{stage[0]}{k}",
            {"eval": {"tasks": TASKS}},
            {"eval.json": chat_eval(stage, 0.4 + 0.1 * i + depth / 100)},
            60.0,
        )
    if with_rl:
        hist = [
            {
                "step": s,
                "rl/reward": 0.2 + 0.02 * s,
                "rl/pass@k": 0.5 + 0.01 * s,
                "rl/seq_len": 30 - s,
                "rl/loss": 0.1,
            }
            for s in range(20)
        ]
        hist += [{"step": s, "eval/accuracy": 0.25 + 0.01 * s} for s in (0, 10, 19)]
        stages["rl"] = write_stage(
            root,
            "rl",
            f"r{k}",
            {"rl": {"task": "toy_arithmetic"}},
            {
                "metrics.json": {
                    "steps": 20,
                    "reward_first": 0.2,
                    "reward_last": 0.58,
                    "eval/accuracy_start": 0.25,
                    "eval/accuracy": 0.44,
                    "device": device,
                },
                "metrics.jsonl": hist,
            },
            240.0,
        )
        stages["eval/rl"] = write_stage(
            root, "eval", f"er{k}", {"eval": {"tasks": TASKS}}, {"eval.json": chat_eval("rl", 0.66)}, 60.0
        )
    run_dir = root / "runs" / name
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"run": name, "stages": stages}))
    return run_dir


@pytest.fixture(autouse=True)
def fixed_prices(monkeypatch):
    monkeypatch.setenv("LLMSTACK_GPU_HOUR_PRICE", "2.0")
    monkeypatch.setenv("LLMSTACK_CPU_HOUR_PRICE", "0.1")


def section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def row(text: str, first_cell: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {first_cell} |"))
    return [c.strip() for c in line.strip("|").split(" | ")]


def test_report_tables_hold_the_numbers_from_the_files(tmp_path):
    run_dir = make_run(tmp_path, "tiny")
    out = write_report(run_dir)
    text = out.read_text()
    assert out == run_dir / "report.md" and text.startswith("# llmstack report: tiny\n")

    env = section(text, "Environment")
    assert "abc1234" in env and "testhost" in env and "torch" in env

    stages = section(text, "Stages")
    pre = row(stages, "pretrain")
    assert pre[4] == "1h 00m" and pre[5] == "1xcpu" and pre[6] == "$0.1000"  # 1 h x $0.1 per CPU hour
    assert row(stages, "eval/sft")[5] == "1xcpu †"  # not recorded: inferred from training stages
    assert row(stages, "data")[4] == "2.3 s"
    assert "**total**" in stages

    data = section(text, "Data and tokenizer")
    assert "23,860 documents" in data and "24.0 MB" in data and "3.645 bytes/token" in data

    training = section(text, "Training")
    assert row(training, "pretrain")[5:7] == ["8.300 → 7.200", "3.310 → 1.600"]
    assert "toyworld_chat 40" in training and "![loss curves](loss_curves.png)" in training

    ev = section(text, "Evaluation")
    header = row(ev, "model")
    assert header == ["model", *TASKS, "ChatCORE", "CORE", "val bpb"]
    assert row(ev, "base") == ["base", "—", "—", "—", "0.1234", "1.500"]
    rl = row(ev, "rl")
    assert rl[1:3] == ["0.660", "0.330"]
    assert rl[3] == f"{((0.66 - 0.25) / 0.75 + 0.33) / 2:.4f}"
    assert row(ev, "sft")[1] == "0.540" and "copa" in ev

    rl_text = section(text, "Reinforcement learning")
    assert "0.200 → 0.580" in rl_text and "0.250 → 0.440" in rl_text
    assert "![reward curves](reward_curves.png)" in rl_text

    samples = section(text, "Samples")
    assert "Once upon a time there was" in samples and "7 + 5 = 12" in samples
    assert "<details>" in section(text, "Config") and "depth: 4" in text

    w, h = png_size(run_dir / "loss_curves.png")
    assert w > 600 and h > 300  # three stage columns, two rows
    w, h = png_size(run_dir / "reward_curves.png")
    assert w > 600 and h > 200
    assert not list(run_dir.glob(".*.tmp"))  # atomic writes left no temp files


def test_report_without_rl_says_dash_and_skips_the_reward_plot(tmp_path):
    run_dir = make_run(tmp_path, "partial", with_rl=False)
    text = write_report(run_dir).read_text()
    assert row(section(text, "Evaluation"), "rl")[1:] == ["—"] * 5
    assert "has not finished" in section(text, "Reinforcement learning")
    assert not (run_dir / "reward_curves.png").exists() and "reward_curves.png" not in text


def test_unfinished_stage_shows_status_and_dashes(tmp_path):
    run_dir = make_run(tmp_path, "tiny")
    run = json.loads((run_dir / "run.json").read_text())
    sft = tmp_path / run["stages"]["eval/sft"]
    (sft / "eval.json").unlink()
    (sft / "eval.log").write_text("[eval] crashed\n")
    mid = tmp_path / run["stages"]["midtrain"]
    (mid / "midtrain.log").unlink()  # no log: time from config.yaml to metrics.json
    os.utime(mid / "config.yaml", (1000.0, 1000.0))
    os.utime(mid / "metrics.json", (1090.0, 1090.0))
    text = write_report(run_dir).read_text()
    stages = section(text, "Stages")
    assert row(stages, "eval/sft")[2:5] == ["not finished", "—", "—"]
    assert row(stages, "midtrain")[3:5] == ["—", "1m 30s ≈"] and "≈ no `done in` line" in stages
    assert row(section(text, "Evaluation"), "sft")[1:4] == ["—", "—", "—"]


def test_gpu_stages_are_priced_per_gpu_hour(tmp_path):
    run_dir = make_run(tmp_path, "gpu", device="8xcuda")
    stages = section(write_report(run_dir).read_text(), "Stages")
    assert row(stages, "pretrain")[5:7] == ["8xcuda", "$16.00"]  # 1 h x 8 GPUs x $2
    assert row(stages, "eval/rl")[5] == "1xcuda †"
    assert row(stages, "tokenizer")[5] == "1xcpu"
    assert stage_cost(8, "cuda", 1800, 2.0, 0.1) == pytest.approx(8.0)
    assert stage_cost(2, "cpu", 3600, 2.0, 0.1) == pytest.approx(0.1)  # gloo processes share one machine


def test_prices_come_from_env_or_config(monkeypatch):
    assert prices()[:2] == (2.0, 0.1)
    monkeypatch.delenv("LLMSTACK_GPU_HOUR_PRICE")
    monkeypatch.delenv("LLMSTACK_CPU_HOUR_PRICE")
    gpu, cpu, source = prices()
    from llmstack.config import CONFIG_DIR

    expected = yaml.safe_load((CONFIG_DIR / "report" / "default.yaml").read_text())
    assert (gpu, cpu) == (expected["gpu_hour_price"], expected["cpu_hour_price"]) and "configs/" in source
    monkeypatch.setenv("LLMSTACK_GPU_HOUR_PRICE", "cheap")
    with pytest.raises(ValueError, match="must be numbers"):
        prices()


def test_read_log_takes_the_last_provenance_and_done_lines(tmp_path):
    log = tmp_path / "pretrain.log"
    log.write_text(
        '[pretrain] {"llmstack": "0.1.0", "started": "old"}\nbar 10%\rbar 20%'
        '[pretrain] {"llmstack": "0.1.0", "started": "new"}\n[pretrain] done in 42.5s\n'
    )
    prov, seconds = read_log(log)
    assert prov["started"] == "new" and seconds == 42.5
    assert read_log(tmp_path / "missing.log") == (None, None)


def test_missing_run_json_and_corrupt_result_fail_with_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the workflow first"):
        load_run(tmp_path / "runs" / "nope")
    run_dir = make_run(tmp_path, "tiny")
    run = json.loads((run_dir / "run.json").read_text())
    (tmp_path / run["stages"]["tokenizer"] / "tokenizer.json").write_text("{oops")
    with pytest.raises(ValueError, match="tokenizer.json is not valid JSON"):
        load_run(run_dir)


def test_sweep_report_compares_runs_over_depth(tmp_path):
    a = make_run(tmp_path, "tiny-model.depth=4", depth=4)
    b = make_run(tmp_path, "tiny-model.depth=6", depth=6, with_rl=False)
    out = write_sweep(tmp_path / "runs" / "tiny-sweep" / "sweep.md", [a, b])
    text = out.read_text()
    header = row(text, "run")
    assert header == ["run", "varied", "params", "val bpb", "CORE", "model", "ChatCORE", *TASKS]
    ra = row(text, "[tiny-model.depth=4](../tiny-model.depth=4/report.md)")
    rb = row(text, "[tiny-model.depth=6](../tiny-model.depth=6/report.md)")
    assert ra[1:6] == ["model.depth=4", "4.00M", "1.500", "0.1234", "rl"] and ra[7] == "0.660"
    assert rb[1:6] == ["model.depth=6", "6.00M", "1.300", "0.1234", "sft"] and rb[7] == f"{0.5 + 0.06:.3f}"
    w, h = png_size(out.parent / "sweep.png")
    assert w > 600 and h > 200
    assert json.loads((out.parent / "sweep.json").read_text())["runs"] == [
        "../tiny-model.depth=4",
        "../tiny-model.depth=6",
    ]


def test_sweep_without_name_overrides_uses_the_config_diff_and_run_categories(tmp_path):
    a = make_run(tmp_path / "p1", "low-lr", sft_lr=1e-4, with_rl=False)
    b = make_run(tmp_path / "p2", "high-lr", sft_lr=3e-4, with_rl=False)
    out = write_sweep(tmp_path / "runs" / "lr" / "sweep.md", [a, b])
    text = out.read_text()
    assert row(text, "[low-lr](../../p1/runs/low-lr/report.md)")[1] == "sft.lr=0.0001"
    assert row(text, "[high-lr](../../p2/runs/high-lr/report.md)")[1] == "sft.lr=0.0003"
    png_size(out.parent / "sweep.png")


def test_name_overrides_keep_values_with_dashes():
    assert name_overrides("tiny-model.depth=4-sft.lr=1e-4") == {"model.depth": "4", "sft.lr": "1e-4"}
    assert name_overrides("my-run") == {}


def test_stage_entry_points_take_positional_paths(tmp_path, capsys):
    a = make_run(tmp_path, "a")
    b = make_run(tmp_path / "other", "b")
    report_stage.main([str(a)])
    assert (a / "report.md").is_file() and "done in" in capsys.readouterr().out
    sweep_stage.main([str(tmp_path / "runs" / "s" / "sweep.md"), str(a), str(b)])
    assert "| [b](../../other/runs/b/report.md) |" in (tmp_path / "runs" / "s" / "sweep.md").read_text()
    with pytest.raises(SystemExit, match="usage"):
        sweep_stage.main([str(tmp_path / "x.md")])
    with pytest.raises(SystemExit, match="run.json not found"):
        report_stage.main([str(tmp_path / "runs" / "missing")])


def test_cli_report_regenerates_every_run_and_sweep(tmp_path, monkeypatch, capsys):
    a = make_run(tmp_path, "tiny-model.depth=4", depth=4)
    b = make_run(tmp_path, "tiny-model.depth=6", depth=6)
    sweep = tmp_path / "runs" / "tiny-sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text(json.dumps({"runs": ["../tiny-model.depth=4", "../tiny-model.depth=6"]}))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["report"]) == 0
    assert capsys.readouterr().out.split() == [
        "runs/tiny-model.depth=4/report.md",
        "runs/tiny-model.depth=6/report.md",
        "runs/tiny-sweep/sweep.md",
    ]
    assert "ChatCORE" in (sweep / "sweep.md").read_text() and (sweep / "sweep.png").is_file()
    for run_dir in (a, b):
        os.utime(run_dir / "report.md", ns=(0, 0))
    assert cli.main(["report", "--run", "tiny-model.depth=4"]) == 0  # that run only
    assert (a / "report.md").stat().st_mtime_ns > 0 and (b / "report.md").stat().st_mtime_ns == 0
    assert cli.main(["report", "--run", "nope"]) == 2
    assert "no run named 'nope'" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no runs under"):
        regenerate(tmp_path / "empty")


def test_helpers():
    assert duration(None) == "—" and duration(5) == "5.0 s" and duration(125) == "2m 05s"
    assert duration(3 * 3600 + 60) == "3h 01m"
    assert fenced("a ``` b") == ["````", "a ``` b", "````"]
    assert smoothing(10) == 0.0 and ema([3.0, 1.0], 0.0) == [3.0, 1.0]
    assert smoothing(40) == pytest.approx(0.5) and smoothing(5000) == 0.95
    assert ema([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])  # bias-corrected: no ramp from 0
