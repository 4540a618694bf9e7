"""Shared fixtures: the ../shared/data samples (skipped cleanly when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# CI clones the repo next to a copy of shared/; LLMSTACK_SHARED_DATA points elsewhere if needed.
SHARED_DATA = Path(os.environ.get("LLMSTACK_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of real public dataset samples; tests that need it skip when it is missing."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data samples not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A small toy-world data stage folder (`data/manifest.json`) and a 384-token tokenizer (`tok.model`)."""
    from llmstack.config import build_section
    from llmstack.data.sources import build_data
    from llmstack.data.toyworld import build_world, iter_documents
    from llmstack.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("corpus")
    cfg = {
        "source": "embedded",
        "rows_per_group": 64,
        "embedded": {
            "seed": 0,
            "n_entities": 16,
            "train_bytes": 400_000,
            "val_bytes": 20_000,
            "shard_bytes": 200_000,
        },
    }
    build_data(build_section("data", cfg), root / "data")
    train_tokenizer(
        iter_documents(build_world(0, 16), 0), root / "tok.model", vocab_size=384, max_chars=400_000
    )
    return root


@pytest.fixture(scope="session")
def sandbox_method() -> str:
    """The OS isolation this machine offers for untrusted code; skip only where there is none at all."""
    from llmstack.sandbox import SandboxUnavailable, resolve_isolation

    try:
        return resolve_isolation("auto")
    except SandboxUnavailable as e:
        pytest.skip(f"no bubblewrap and no user namespaces here: {e}")
