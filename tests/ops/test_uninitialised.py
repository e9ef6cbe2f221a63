"""Issue 12 item 11 (part): commands on a data folder that was never initialised say what to run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", [["notify", "status"], ["scan", "--top", "3"]])
def test_an_uninitialised_folder_gets_a_hint_not_a_traceback(tmp_path: Path, command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QM_") and k != "DATABASE_URL"}
    env.update({"QM_DATA_DIR": str(tmp_path / "never-initialised"), "PYTHONPATH": str(ROOT)})
    done = subprocess.run([sys.executable, "-m", "engine", *command], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert "python -m engine init" in done.stderr
    assert "Traceback" not in done.stderr
