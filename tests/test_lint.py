"""The lint settings the project claims are the ones it runs, and the code passes them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _lint_settings() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]


def test_unused_arguments_blind_excepts_and_stale_noqa_are_checked():
    settings = _lint_settings()
    assert {"ARG", "BLE", "RUF100"} <= set(settings["select"])
    # Fixtures are parameters a test names without using, so ARG stays quiet under tests/ only.
    assert "ARG" in settings["per-file-ignores"]["tests/**"]
    assert not any("ARG" in rules or "BLE" in rules for pattern, rules in settings["per-file-ignores"].items()
                   if not pattern.startswith("tests/"))


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff comes with the dev extra")
def test_ruff_reports_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
