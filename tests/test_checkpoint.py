"""Step checkpoints: newest valid one wins, corrupt ones are skipped, other inputs' ones are never resumed."""

from __future__ import annotations

import pytest

from llmstack.checkpoint import Checkpointer


def test_keeps_the_newest_and_skips_a_corrupt_one(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=2, fingerprint="inputs-a")
    for step in (10, 20, 30):
        ckpt.save(step, {"value": step})
    assert [s for s, _ in ckpt.steps()] == [20, 30]
    (tmp_path / "step_000040.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        state = ckpt.load_latest()
    assert state["step"] == 30 and state["value"] == 30


def test_checkpoints_of_other_inputs_are_dropped_not_resumed(tmp_path):
    Checkpointer(tmp_path, fingerprint="old-upstream").save(5, {"value": 1})
    fresh = Checkpointer(tmp_path, fingerprint="new-upstream")
    with pytest.warns(UserWarning, match="made from other input files"):
        assert fresh.load_latest() is None
    assert fresh.steps() == []
    fresh.save(5, {"value": 2})
    assert fresh.load_latest()["value"] == 2
