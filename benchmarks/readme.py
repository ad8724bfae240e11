"""Regenerate a README section from a benchmark's Markdown: ``python -m cpfd.benchmarks.readme SECTION FILE [README]``.

The section sits between ``<!-- SECTION:start -->`` and ``<!-- SECTION:end -->``; nothing else is touched.
"""

from __future__ import annotations

import sys
from pathlib import Path


def replace_section(readme: str, section: str, body: str) -> str:
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    if start not in readme or end not in readme:
        raise SystemExit(f"error: the README has no {start} ... {end} markers")
    head, rest = readme.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body.strip()}\n{end}{tail}"


def main(argv: list[str]) -> None:
    if len(argv) not in (2, 3):
        raise SystemExit(__doc__)
    section, source = argv[0], Path(argv[1])
    readme = Path(argv[2]) if len(argv) == 3 else Path("README.md")
    readme.write_text(replace_section(readme.read_text(), section, source.read_text()))
    print(f"{readme}: section {section} regenerated from {source}")


if __name__ == "__main__":
    main(sys.argv[1:])
