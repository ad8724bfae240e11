"""Start-up checks that run before any worker loads a model: the configured tags resolved in the local BentoML
model store, and each packaged student's files checked whole (a fault names the tag and the file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cpfd.errors import ConfigError, CpfdError

from .config import ServingConfig


def short_reason(e: BaseException, n: int = 160) -> str:
    """An exception as one short line (start-up messages name the file; this says why)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= n else text[: n - 3] + "..."


def resolve_store_models(tags: list[str]) -> dict[str, tuple[str, Path]]:
    """Config tag -> (full tag, folder) from the local BentoML model store (BENTOML_HOME), whose files are
    checked (check_model_files); never a remote store."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    out = {}
    for tag in tags:
        try:
            m = bentoml.models.get(tag)
        except BentoMLException:
            home = os.environ.get("BENTOML_HOME", "~/bentoml")
            raise ConfigError(
                f"model {tag!r} is not in the BentoML model store ({home}); run `cpfd package` first"
            ) from None
        check_model_files(str(m.tag), Path(m.path))
        out[tag] = (str(m.tag), Path(m.path))
    return out


def check_model_files(tag: str, folder: Path) -> None:
    """The cheap checks of a packaged student before anything loads it: its JSON spec parses and its safetensors
    file is whole (header readable, data exactly as long as the header says). A CpfdError names tag and file."""
    from cpfd.conventions import CONFIG_FILE, WEIGHTS_FILE

    spec, weights = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for f in (spec, weights, folder / "tokenizer"):
        if not f.exists():
            raise CpfdError(f"model {tag}: {f} is missing")
    try:
        json.loads(spec.read_text())
    except (OSError, ValueError) as e:
        raise CpfdError(f"model {tag}: {spec} is not readable JSON ({short_reason(e)})") from None
    try:
        _check_safetensors(weights)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise CpfdError(f"model {tag}: {weights} is not a whole safetensors file ({short_reason(e)})") from None


def _check_safetensors(path: Path) -> None:
    """Header length, JSON header, and file size = 8 + header + the largest tensor end offset."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{size} bytes, shorter than a header")
        n = int.from_bytes(head, "little")
        if n > size - 8:
            raise ValueError("invalid header length")
        header = json.loads(f.read(n))
    end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end != size:
        raise ValueError(f"{size} bytes, the header describes {8 + n + end}: truncated or padded")


def scenario_inputs(cfg: ServingConfig, model_dirs: dict[str, tuple[str, Path]]) -> dict[str, list[str]]:
    """Scenario -> the inputs its students read (``frames``, ``title``), from the first arm's model file (the
    runtime checks that every arm reads the same); what the OpenAPI document requires per scenario."""
    from cpfd.config import ALL_MODALITIES
    from cpfd.conventions import model_metadata

    out = {}
    for scenario, scen in cfg.scenarios.items():
        tag, folder = model_dirs[next(iter(scen.arms.values())).model]
        try:
            spec = model_metadata(folder).get("spec") or {}
        except (OSError, ValueError) as e:
            raise CpfdError(f"model {tag}: {folder} has no readable spec ({short_reason(e)})") from None
        out[scenario] = list(spec.get("modalities") or ALL_MODALITIES)
    return out
