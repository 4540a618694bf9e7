"""Integrity: inputs are checked against the checksums their producer recorded, shards against the manifest.

A corrupt file must be named, with the command that rebuilds it, before a stage does any work; a file
given by hand (no meta.json beside it, outside artifacts/) must still be accepted.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from stagerun import start_stage

from llmstack import artifacts
from llmstack.artifacts import IntegrityError, output_checksums, verify_input, write_json
from llmstack.data.shards import read_manifest, shard_paths, validation_file
from llmstack.stages.common import sha256_file_set

KEY = "0123456789"


def stage_folder(root: Path, stage: str, files: dict[str, bytes]) -> Path:
    """A finished upstream stage folder: its files and the meta.json stage_main would write."""
    folder = root / "artifacts" / stage / KEY
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    outputs = output_checksums(folder, {Path(n).stem: n for n in files})
    write_json(folder / "meta.json", {"stage": stage, "key": KEY, "outputs": outputs})
    return folder


def flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_intact_and_hand_given_inputs_pass(tmp_path):
    folder = stage_folder(tmp_path, "pretrain", {"model.pt": b"weights" * 100})
    verify_input("model", folder / "model.pt")
    hand = tmp_path / "elsewhere" / "model.pt"  # e.g. a model copied into a temp dir by a test
    hand.parent.mkdir()
    hand.write_bytes(b"anything")
    verify_input("model", hand)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_input_is_named_with_the_rebuild_command(tmp_path, damage):
    folder = stage_folder(tmp_path, "pretrain", {"model.pt": b"weights" * 100})
    model = folder / "model.pt"
    if damage == "flip":
        flip_byte(model, 10)
    else:
        model.write_bytes(model.read_bytes()[:50])
    with pytest.raises(IntegrityError) as err:
        verify_input("model", model)
    message = str(err.value)
    assert "\n" not in message and f"corrupt input model={model}" in message
    assert "snakemake --cores all --forcerun pretrain" in message and f"delete {folder}/" in message


def test_unlisted_or_unverifiable_inputs_fail(tmp_path):
    folder = stage_folder(tmp_path, "tokenizer", {"tokenizer.model": b"tok"})
    (folder / "extra.model").write_bytes(b"not declared")
    with pytest.raises(IntegrityError, match="lists no output named extra.model"):
        verify_input("tokenizer", folder / "extra.model")
    (folder / "meta.json").unlink()  # inside artifacts/<stage>/<key>/, a missing meta.json is an error
    with pytest.raises(IntegrityError, match="unverified input .*--forcerun tokenizer"):
        verify_input("tokenizer", folder / "tokenizer.model")


def test_each_input_is_hashed_once_for_verification_and_fingerprint(tmp_path, monkeypatch):
    folder = stage_folder(tmp_path, "pretrain", {"model.pt": b"w" * 1000, "metrics.json": b"{}"})
    reads: list[str] = []
    real = artifacts.sha256_file
    monkeypatch.setattr(artifacts, "sha256_file", lambda p: reads.append(str(p)) or real(p))
    inputs = {"model": folder / "model.pt"}
    verify_input("model", inputs["model"])
    sha256_file_set(inputs)
    verify_input("model", inputs["model"])
    assert reads == [str(inputs["model"])]


def copy_data(corpus: Path, to: Path) -> Path:
    shutil.copytree(corpus / "data", to)
    return to / "manifest.json"


def test_corrupt_or_truncated_shard_is_named(tiny_corpus, tmp_path):
    manifest = copy_data(tiny_corpus, tmp_path / "artifacts" / "data" / KEY)
    shard = sorted((manifest.parent / "shards").glob("*.parquet"))[-1]
    flip_byte(shard, shard.stat().st_size // 2)
    read_manifest(manifest)  # sizes only: a flipped byte needs the hash
    with pytest.raises(IntegrityError) as err:
        shard_paths(manifest)
    assert f"corrupt data shard {shard}" in str(err.value) and "--forcerun data" in str(err.value)
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(IntegrityError, match=r"corrupt data shard .* \(100 bytes"):
        read_manifest(manifest)


def test_validation_file_hashes_only_what_base_eval_reads(tiny_corpus, tmp_path):
    manifest = copy_data(tiny_corpus, tmp_path / "artifacts" / "data" / KEY)
    shard = sorted((manifest.parent / "shards").glob("*.parquet"))[-1]
    flip_byte(shard, shard.stat().st_size // 2)  # a training shard base_eval never opens
    val, info = validation_file(manifest)
    assert val == manifest.parent / info["val"]["file"]
    flip_byte(val, val.stat().st_size // 2)
    with pytest.raises(IntegrityError, match="corrupt data shard"):
        validation_file(manifest)


def failed_stage(stage: str, out: Path, overrides: str, inputs: dict[str, Path]) -> list[str]:
    """Run a stage that must fail; returns its output lines."""
    proc: subprocess.Popen = start_stage(stage, out, overrides, inputs)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    return output.strip().splitlines()


def test_next_stage_refuses_a_corrupt_upstream_model(tiny_corpus, tmp_path):
    folder = stage_folder(tmp_path, "pretrain", {"model.pt": b"weights" * 1000, "metrics.json": b"{}"})
    flip_byte(folder / "model.pt", 100)
    inputs = {
        "model": folder / "model.pt",
        "tokenizer": tiny_corpus / "tok.model",  # by hand: no meta.json, accepted
        "data": tiny_corpus / "data" / "manifest.json",
    }
    last = failed_stage("base_eval", tmp_path / "eval", "", inputs)[-1]
    assert last.startswith(f"[base_eval] corrupt input model={folder / 'model.pt'}")
    assert "snakemake --cores all --forcerun pretrain" in last
    assert not (tmp_path / "eval" / "meta.json").exists()


def test_pretrain_names_a_corrupt_shard_before_training(tiny_corpus, tmp_path):
    from test_train import TINY

    manifest = copy_data(tiny_corpus, tmp_path / "data")
    shard = sorted((manifest.parent / "shards").glob("*.parquet"))[0]
    flip_byte(shard, 200)
    lines = failed_stage("pretrain", tmp_path / "run", TINY, {"data": manifest, "tokenizer": tiny_corpus / "tok.model"})
    assert lines[-1].startswith(f"[pretrain] corrupt data shard {shard}") and "--forcerun data" in lines[-1]
    assert not any("params on" in line for line in lines), "training started before the shard check"
