"""What the benchmark scripts share: the environment their kit processes run in."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def kit_env(**overrides: str) -> dict[str, str]:
    """This process's environment with ``overrides``, and ``KERASCNN_DATA_DIR`` at the offline
    mirror ``../shared/data`` beside the repository when it is not set and the mirror exists."""
    env = dict(os.environ, **overrides)
    if "KERASCNN_DATA_DIR" not in env and (ROOT.parent / "shared" / "data").is_dir():
        env["KERASCNN_DATA_DIR"] = str(ROOT.parent / "shared" / "data")
    return env
