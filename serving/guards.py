"""Import guards of the serving process: the dense-feature stack (Feast) may never be imported there."""

from __future__ import annotations

import sys

from cpfd.errors import CpfdError

FORBIDDEN_MODULES = ("feast",)


class _ForbidImports:
    """A meta-path finder that refuses the dense-feature stack inside the serving process."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            raise ImportError(
                f"{fullname} may not be imported in the serving process: served students need no dense feature"
            )
        return None


def forbid_imports(names: tuple[str, ...] = FORBIDDEN_MODULES) -> None:
    loaded = [m for m in sys.modules if m.split(".")[0] in names]
    if loaded:
        raise CpfdError(f"the serving process already imported {sorted(loaded)[:3]}")
    if not any(isinstance(f, _ForbidImports) for f in sys.meta_path):
        sys.meta_path.insert(0, _ForbidImports(names))


def forbidden_loaded(names: tuple[str, ...] = FORBIDDEN_MODULES) -> list[str]:
    return sorted(m for m in sys.modules if m.split(".")[0] in names)
