"""The report builds from a tiny run's stage folders: tables from meta.json and the result files,
valid PNGs, prices from the report config, tolerant of gaps, and never a look at a log."""

from __future__ import annotations

import builtins
import io
import json
import os
import struct
from pathlib import Path

import pytest

from llmstack import cli
from llmstack.artifacts import write_json
from llmstack.config import ReportConfig
from llmstack.report import (
    duration,
    ema,
    fenced,
    load_run,
    regenerate,
    smoothing,
    stage_cost,
    varied_settings,
    write_report,
    write_sweep,
)
from llmstack.stages import report as report_stage
from llmstack.stages import sweep_report as sweep_stage

TASKS = ["toy_arithmetic", "toyworld_mc"]  # as eval.json holds them: write_json sorts keys
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PRICES = ReportConfig(gpu_hour_price=2.0, cpu_hour_price=0.1)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def stage_meta(stage: str, key: str, config: dict, seconds: float, device: str, dtype: str | None) -> dict:
    """A meta.json as stages.common.write_meta writes it (what the report reads of it, and a bit more)."""
    meta = {
        "stage": stage,
        "key": key,
        "inputs": {},
        "config": config,
        "execution": {},
        "git": "abc1234",
        "versions": {"llmstack": "0.1.0", "python": "3.11.7", "torch": "2.13.0+cpu"},
        "host": "testhost",
        "platform": "Linux-test",
        "started": "2026-11-25 10:00:00 UTC",
        "device": device,
        "seconds": seconds,
        "metrics": {},
        "outputs": {},
    }
    return {**meta, "dtype": dtype} if dtype else meta


def write_stage(
    root: Path,
    stage: str,
    key: str,
    config: dict,
    files: dict,
    seconds: float,
    device: str = "1xcpu",
    dtype: str | None = None,
) -> str:
    """A finished stage folder: its result files, then meta.json (last, as stages write it)."""
    d = root / "artifacts" / stage / key
    d.mkdir(parents=True, exist_ok=True)  # a sweep shares its data and tokenizer folders
    for name, body in files.items():
        if name.endswith(".jsonl"):
            (d / name).write_text("".join(json.dumps(e) + "\n" for e in body))
        else:
            write_json(d / name, body)
    write_json(d / "meta.json", stage_meta(stage, key, config, seconds, device, dtype))
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


MANIFEST = {
    "source": {"kind": "embedded", "seed": 0},
    "shards": [{"file": "a"}, {"file": "b"}],
    "val": {"file": "val.parquet", "rows": 501, "text_bytes": 500_123},
    "rows": 23_860,
    "text_bytes": 24_012_345,
}
DTYPE = "torch.bfloat16"


def rl_files(depth: int, device: str) -> dict:
    hist = [
        {"step": s, "rl/reward": 0.2 + 0.02 * s, "rl/pass@k": 0.5 + 0.01 * s, "rl/seq_len": 30 - s, "rl/loss": 0.1}
        for s in range(20)
    ]
    hist += [{"step": s, "eval/accuracy": 0.25 + 0.01 * s} for s in (0, 10, 19)]
    metrics = {
        "steps": 20,
        "params": 1_000_000 * depth,
        "reward_first": 0.2,
        "reward_last": 0.58,
        "eval/accuracy_start": 0.25,
        "eval/accuracy": 0.44,
        "device": device,
    }
    return {"metrics.json": metrics, "metrics.jsonl": hist}


def base_stages(root: Path, depth: int, device: str) -> dict[str, str]:
    """data, tokenizer, pretrain and base_eval folders; run.json entries."""
    k, eval_device = f"{depth:02d}", "1x" + device.split("x", 1)[1]
    model = {"depth": depth, "n_embd": 64 * depth, "seq_len": 256}  # n_embd: derived from depth
    pretrain = {
        "metrics.json": train_metrics("pretrain", 1_000_000 * depth, 2.0 - depth / 10, device),
        "metrics.jsonl": train_history(12, 8.3),
    }
    base_eval = {
        "val/bpb": 1.9 - depth / 10,
        "core": {"copa": {"accuracy": 0.55, "centered": 0.1, "n": 100}},
        "core_metric": 0.1234,
        "toy": {"fact_mc": {"accuracy": 0.3, "n": 200}},
        "samples": ["The capital of Veloria is Ostra"],
    }
    tokenizer = {"tokenizer.json": {"vocab_size": 4096, "bytes_per_token": 3.645}}
    return {
        "data": write_stage(root, "data", "d0", {"data": {"source": "embedded"}}, {"manifest.json": MANIFEST}, 2.3),
        "tokenizer": write_stage(root, "tokenizer", "t0", {"tokenizer": {"vocab_size": 4096}}, tokenizer, 0.8),
        "pretrain": write_stage(
            root, "pretrain", f"p{k}", {"model": model, "pretrain": {"max_steps": 12}}, pretrain, 3600.0, device, DTYPE
        ),
        "base_eval": write_stage(
            root,
            "base_eval",
            f"b{k}",
            {"base_eval": {"core_tasks": []}},
            {"eval.json": base_eval},
            30.0,
            eval_device,
            DTYPE,
        ),
    }


def chat_stages(root: Path, depth: int, device: str, sft_lr: float, with_rl: bool) -> dict[str, str]:
    """midtrain, sft (and rl), each followed by its eval; run.json entries."""
    k, eval_device = f"{depth:02d}", "1x" + device.split("x", 1)[1]
    stages = {}
    for i, stage in enumerate(["midtrain", "sft", "rl"] if with_rl else ["midtrain", "sft"]):
        if stage == "rl":
            files, config, seconds = rl_files(depth, device), {"rl": {"task": "toy_arithmetic"}}, 240.0
        else:
            files = {
                "metrics.json": train_metrics(stage, 1_000_000 * depth, 1.2, device),
                "metrics.jsonl": train_history(8, 4.0 - i),
            }
            config, seconds = {stage: {"num_epochs": 1, "lr": sft_lr if stage == "sft" else 2e-4}}, 120.0
        stages[stage] = write_stage(root, stage, f"{stage[0]}{k}", config, files, seconds, device, DTYPE)
        score = 0.66 if stage == "rl" else 0.4 + 0.1 * i + depth / 100
        stages[f"eval/{stage}"] = write_stage(
            root,
            "eval",
            f"e{stage[0]}{k}",
            {"eval": {"tasks": TASKS}, "model_stage": stage},
            {"eval.json": chat_eval(stage, score)},
            60.0,
            eval_device,
            DTYPE,
        )
    return stages


def make_run(
    root: Path, name: str, depth: int = 4, with_rl: bool = True, device: str = "1xcpu", sft_lr: float = 1e-4
) -> Path:
    """A schema-true run folder: run.json plus every stage folder it names, each with its meta.json."""
    stages = {**base_stages(root, depth, device), **chat_stages(root, depth, device, sft_lr, with_rl)}
    run_dir = root / "runs" / name
    run_dir.mkdir(parents=True)
    write_json(run_dir / "run.json", {"run": name, "stages": stages})
    return run_dir


def stage_dir(run_dir: Path, name: str) -> Path:
    """The folder run.json names for one stage instance."""
    return run_dir.parent.parent / json.loads((run_dir / "run.json").read_text())["stages"][name]


def section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def row(text: str, first_cell: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {first_cell} |"))
    return [c.strip() for c in line.strip("|").split(" | ")]


def test_report_tables_hold_the_numbers_from_the_files(tmp_path):
    run_dir = make_run(tmp_path, "tiny")
    out = write_report(run_dir, PRICES)
    text = out.read_text()
    assert out == run_dir / "report.md" and text.startswith("# llmstack report: tiny\n")
    assert "first stage started 2026-11-25 10:00:00 UTC." in text

    env = section(text, "Environment")
    assert "abc1234" in env and "testhost" in env and "2.13.0+cpu" in env and "torch" in env

    stages = section(text, "Stages")
    pre = row(stages, "pretrain")
    assert pre[2:7] == ["done", "2026-11-25 10:00:00 UTC", "1h 00m", "1xcpu", "$0.1000"]  # 1 h x $0.1 per CPU hour
    assert row(stages, "eval/sft")[5] == "1xcpu" and "†" not in stages  # every meta.json names its device
    assert row(stages, "data")[4] == "2.3 s"
    assert "**total**" in stages

    data = section(text, "Data and tokenizer")
    assert "23,860 documents" in data and "24.0 MB" in data and "3.645 bytes/token" in data

    training = section(text, "Training")
    assert row(training, "pretrain")[3:7] == ["1xcpu", "torch.bfloat16", "8.300 → 7.200", "3.310 → 1.600"]
    assert "| rl |" not in training  # it learns from rewards: its own section
    assert "toyworld_chat 40" in training and "![loss curves](loss_curves.png)" in training

    ev = section(text, "Evaluation")
    header = row(ev, "model")
    assert header == ["model", *TASKS, "ChatCORE", "CORE", "val bpb"]
    assert row(ev, "base") == ["base", "—", "—", "—", "0.1234", "1.500"]
    rl = row(ev, "rl")
    assert rl[1:3] == ["0.330", "0.660"]
    assert rl[3] == f"{((0.66 - 0.25) / 0.75 + 0.33) / 2:.4f}"
    assert row(ev, "sft")[2] == "0.540" and "copa" in ev and "fact_mc" in ev

    rl_text = section(text, "Reinforcement learning")
    assert "0.200 → 0.580" in rl_text and "0.250 → 0.440" in rl_text
    assert "![reward curves](reward_curves.png)" in rl_text

    samples = section(text, "Samples")
    assert "Once upon a time there was" in samples and "Veloria" in samples and "7 + 5 = 12" in samples
    config = section(text, "Config")
    assert "<details>" in config and "depth: 4" in config and "model_stage" not in config.split("# eval")[0]

    w, h = png_size(run_dir / "loss_curves.png")
    assert w > 600 and h > 300  # three stage columns, two rows
    w, h = png_size(run_dir / "reward_curves.png")
    assert w > 600 and h > 200
    assert not list(run_dir.glob(".*.tmp"))  # atomic writes left no temp files


def test_report_without_rl_says_dash_and_skips_the_reward_plot(tmp_path):
    run_dir = make_run(tmp_path, "partial", with_rl=False)
    text = write_report(run_dir, PRICES).read_text()
    assert row(section(text, "Evaluation"), "rl")[1:] == ["—"] * 5
    assert "has not finished" in section(text, "Reinforcement learning")
    assert not (run_dir / "reward_curves.png").exists() and "reward_curves.png" not in text


def test_a_stage_without_meta_json_has_not_finished(tmp_path):
    run_dir = make_run(tmp_path, "tiny")
    (stage_dir(run_dir, "eval/sft") / "meta.json").unlink()  # eval.json alone: maybe half a story
    (stage_dir(run_dir, "midtrain") / "meta.json").unlink()  # still running: its curves exist
    (stage_dir(run_dir, "tokenizer") / "meta.json").unlink()
    text = write_report(run_dir, PRICES).read_text()
    stages = section(text, "Stages")
    assert row(stages, "eval/sft")[2:7] == ["not finished", "—", "—", "—", "—"]
    assert row(stages, "midtrain")[2:5] == ["not finished", "—", "—"]
    assert row(section(text, "Evaluation"), "sft")[1:4] == ["—", "—", "—"]
    assert row(section(text, "Training"), "midtrain")[1:] == ["—"] * 9
    assert "- tokenizer: — (not finished)" in section(text, "Data and tokenizer")
    assert "midtrain mixture" not in text and "# midtrain:" not in section(text, "Config")
    w, _ = png_size(run_dir / "loss_curves.png")
    assert w > 1200  # the running midtrain's curves still plotted beside pretrain and sft


def test_gpu_stages_are_priced_per_gpu_hour(tmp_path):
    run_dir = make_run(tmp_path, "gpu", device="8xcuda")
    stages = section(write_report(run_dir, PRICES).read_text(), "Stages")
    assert row(stages, "pretrain")[5:7] == ["8xcuda", "$16.00"]  # 1 h x 8 GPUs x $2
    assert row(stages, "eval/rl")[5:7] == ["1xcuda", "$0.0333"]  # 1 min x 1 GPU x $2
    assert row(stages, "tokenizer")[5] == "1xcpu"  # data and tokenizer record a CPU: CPU prices
    assert stage_cost(8, "cuda", 1800, 2.0, 0.1) == pytest.approx(8.0)
    assert stage_cost(2, "cpu", 3600, 2.0, 0.1) == pytest.approx(0.1)  # gloo processes share one machine


def test_a_stage_that_names_no_device_is_assumed_on_the_training_type(tmp_path):
    run_dir = make_run(tmp_path, "gpu", device="8xcuda")
    meta_path = stage_dir(run_dir, "eval/rl") / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["device"]
    write_json(meta_path, meta)
    stages = section(write_report(run_dir, PRICES).read_text(), "Stages")
    assert row(stages, "eval/rl")[5] == "1xcuda †" and "† not recorded by the stage" in stages


def test_prices_come_from_the_report_config_passed_down(tmp_path):
    run_dir = make_run(tmp_path, "gpu", device="8xcuda")

    def pretrain_cost() -> str:
        return row(section((run_dir / "report.md").read_text(), "Stages"), "pretrain")[6]

    write_report(run_dir, ReportConfig(gpu_hour_price=5.0, cpu_hour_price=0.1))
    assert pretrain_cost() == "$40.00" and "$5.00 per GPU-hour" in (run_dir / "report.md").read_text()
    write_report(run_dir)  # no config: the schema's defaults, never configs/report/default.yaml
    assert pretrain_cost() == f"${8 * ReportConfig().gpu_hour_price:,.2f}"
    report_stage.main([str(run_dir), "--config", json.dumps({"report": {"gpu_hour_price": 0.5}})])
    assert pretrain_cost() == "$4.00"  # a report.* override on the stage's command line
    with pytest.raises(SystemExit, match="bad --config"):
        report_stage.main([str(run_dir), "--config", '{"report": {"gpu_price": 1}}'])
    assert regenerate(tmp_path / "runs", "gpu", ReportConfig(gpu_hour_price=1.0)) == [run_dir / "report.md"]
    assert pretrain_cost() == "$8.00"


def test_the_report_never_opens_a_log(tmp_path, monkeypatch):
    run_dir = make_run(tmp_path, "tiny")
    folders = [stage_dir(run_dir, n) for n in json.loads((run_dir / "run.json").read_text())["stages"]]
    for folder in folders:
        (folder / f"{folder.parent.name}.log").write_text(
            '[x] {"llmstack": "LOGVERSION", "git": "LOGCOMMIT"}\n[x] done in 1e9s\n'
        )

    def body(text: str) -> str:  # all but the "Generated <time>" line
        return "\n".join(line for line in text.splitlines() if not line.startswith("Generated "))

    real_open = io.open

    def guarded(file, *args, **kwargs):
        assert not str(file).endswith(".log"), f"the report opened {file}"
        return real_open(file, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(io, "open", guarded)
        m.setattr(builtins, "open", guarded)
        with_logs = body(write_report(run_dir, PRICES).read_text())
        write_sweep(tmp_path / "runs" / "s" / "sweep.md", [run_dir], PRICES)
    assert "LOGVERSION" not in with_logs and "LOGCOMMIT" not in with_logs
    for folder in folders:
        (folder / f"{folder.parent.name}.log").unlink()
    assert body(write_report(run_dir, PRICES).read_text()) == with_logs


def test_missing_run_json_and_corrupt_files_fail_with_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the workflow first"):
        load_run(tmp_path / "runs" / "nope")
    run_dir = make_run(tmp_path, "tiny")
    (stage_dir(run_dir, "tokenizer") / "tokenizer.json").write_text("{oops")
    with pytest.raises(ValueError, match="tokenizer.json is not valid JSON"):
        load_run(run_dir)
    (stage_dir(run_dir, "data") / "meta.json").write_text("{oops")
    with pytest.raises(ValueError, match="meta.json is not valid JSON"):
        load_run(run_dir)


def test_sweep_report_compares_runs_over_depth(tmp_path):
    a = make_run(tmp_path, "tiny-model.depth=4", depth=4)
    b = make_run(tmp_path, "tiny-model.depth=6", depth=6, with_rl=False)
    out = write_sweep(tmp_path / "runs" / "tiny-sweep" / "sweep.md", [a, b], PRICES)
    text = out.read_text()
    header = row(text, "run")
    assert header == ["run", "varied", "params", "val bpb", "CORE", "model", "ChatCORE", *TASKS, "est. cost"]
    ra = row(text, "[tiny-model.depth=4](../tiny-model.depth=4/report.md)")
    rb = row(text, "[tiny-model.depth=6](../tiny-model.depth=6/report.md)")
    # model.n_embd varies too, but in lockstep with model.depth: the label names the dial only
    assert ra[1:6] == ["model.depth=4", "4.00M", "1.500", "0.1234", "rl"] and ra[8] == "0.660"
    assert rb[1:6] == ["model.depth=6", "6.00M", "1.300", "0.1234", "sft"] and rb[8] == f"{0.5 + 0.06:.3f}"
    assert ra[-1] == "$0.1193"  # every stage on CPU: 4293.1 s x $0.1 per machine-hour
    w, h = png_size(out.parent / "sweep.png")
    assert w > 600 and h > 200
    assert json.loads((out.parent / "sweep.json").read_text())["runs"] == [
        "../tiny-model.depth=4",
        "../tiny-model.depth=6",
    ]


def test_sweep_varied_settings_come_from_configs_not_names(tmp_path):
    a = make_run(tmp_path / "p1", "first", depth=4, with_rl=False)
    b = make_run(tmp_path / "p2", "second", depth=6, with_rl=False)
    text = write_sweep(tmp_path / "runs" / "s" / "sweep.md", [a, b], PRICES).read_text()
    assert row(text, "[first](../../p1/runs/first/report.md)")[1] == "model.depth=4"
    assert row(text, "[second](../../p2/runs/second/report.md)")[1] == "model.depth=6"
    # names that look like overrides say nothing: the same config varies nothing, so rows show the name
    c = make_run(tmp_path / "p3", "x-model.depth=8", depth=4, with_rl=False)
    d = make_run(tmp_path / "p4", "x-model.depth=9", depth=4, with_rl=False)
    runs = [load_run(c), load_run(d)]
    assert varied_settings(runs) == [{}, {}]
    text = write_sweep(tmp_path / "runs" / "t" / "sweep.md", [c, d], PRICES).read_text()
    assert row(text, "[x-model.depth=8](../../p3/runs/x-model.depth=8/report.md)")[1] == "x-model.depth=8"


def test_sweep_without_a_depth_axis_uses_the_config_diff_and_run_categories(tmp_path):
    a = make_run(tmp_path / "p1", "low-lr", sft_lr=1e-4, with_rl=False)
    b = make_run(tmp_path / "p2", "high-lr", sft_lr=3e-4, with_rl=False)
    out = write_sweep(tmp_path / "runs" / "lr" / "sweep.md", [a, b], PRICES)
    text = out.read_text()
    assert row(text, "[low-lr](../../p1/runs/low-lr/report.md)")[1] == "sft.lr=0.0001"
    assert row(text, "[high-lr](../../p2/runs/high-lr/report.md)")[1] == "sft.lr=0.0003"
    png_size(out.parent / "sweep.png")


def test_varied_settings_skip_what_one_run_has_not_reached_and_eval_instance_names(tmp_path):
    a = load_run(make_run(tmp_path / "p1", "a", depth=4))
    b = load_run(make_run(tmp_path / "p2", "b", depth=4, with_rl=False))
    assert varied_settings([a, b]) == [{}, {}]  # rl.task only in a; eval's model_stage names an instance


def test_stage_entry_points_take_positional_paths_and_a_report_config(tmp_path, capsys):
    a = make_run(tmp_path, "a")
    b = make_run(tmp_path / "other", "b")
    report_stage.main([str(a)])
    assert (a / "report.md").is_file() and "done in" in capsys.readouterr().out
    prices = json.dumps({"report": {"gpu_hour_price": 2.0, "cpu_hour_price": 36.0}})
    sweep_stage.main([str(tmp_path / "runs" / "s" / "sweep.md"), str(a), str(b), "--config", prices])
    text = (tmp_path / "runs" / "s" / "sweep.md").read_text()
    assert row(text, "[b](../../other/runs/b/report.md)")[-1] == "$42.93"  # 4293.1 s on CPU x $36 per hour
    capsys.readouterr()
    with pytest.raises(SystemExit):
        sweep_stage.main([str(tmp_path / "x.md")])
    assert "usage" in capsys.readouterr().err
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
