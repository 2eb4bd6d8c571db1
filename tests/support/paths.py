"""Where things are: the repository root, the working directory of every process tests start."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
