"""Print the core dependencies at their declared lower bounds (``name==version``), one per line, for CI's
lower-bound run (.ci/run): every ``name>=X`` of pyproject's ``[project] dependencies`` becomes ``name==X``.

torch stays at the tested 2.13.0: its CPU build is the one that installs offline, and any other version pulls a
multi-GB CUDA build. ``pydantic-core`` is left to pydantic, which pins the exact version it was built with.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

OVERRIDES: dict[str, str | None] = {"torch": "torch==2.13.0", "pydantic-core": None}


def lower_bounds(pyproject: Path) -> list[str]:
    pins: list[str] = []
    for req in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
        name = re.split(r"[\s<>=!~;\[]", req.strip(), maxsplit=1)[0].lower()
        if name in OVERRIDES:
            override = OVERRIDES[name]
            if override:
                pins.append(override)
            continue
        low = re.search(r">=\s*([\w.]+)", req)
        if low is None:
            sys.exit(f"{req!r} declares no lower bound (>=): .ci/lower_bounds.py cannot test it")
        pins.append(f"{name}=={low.group(1)}")
    return pins


if __name__ == "__main__":
    print("\n".join(lower_bounds(Path(__file__).resolve().parents[1] / "pyproject.toml")))
