"""The reproduce tests' fixture: a folder holding the tiny preset (tests/tiny_preset.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_preset import write_tiny_preset


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    return write_tiny_preset(tmp_path / "configs")
