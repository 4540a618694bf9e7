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
