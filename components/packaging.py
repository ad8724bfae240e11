"""Save a trained student folder into the BentoML model store (BENTOML_HOME picks the store), and move
packaged models between stores as files.

Only the files serving needs are copied: the safetensors weights, the JSON spec and the
tokenizer's text/JSON files. A teacher (it needs dense features) is refused, and so is any
pickle-format file. On a cluster the pipeline's package step writes into its pod's own store,
which disappears with the pod: it also exports each model (``<name>-<version>.bentomodel``, BentoML's
export format) into its output artifact, from which ``import_models`` fills the serving store.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from cpfd.conventions import CONFIG_FILE, WEIGHTS_FILE, model_metadata
from cpfd.errors import CpfdError

TOKENIZER_SUFFIXES = (".json", ".txt", ".model")
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$")


def _files_to_copy(model_dir: Path) -> list[Path]:
    missing = [n for n in (WEIGHTS_FILE, CONFIG_FILE, "tokenizer") if not (model_dir / n).exists()]
    if missing:
        raise CpfdError(f"{model_dir}: not a trained model folder, missing {missing}")
    tok = sorted(p for p in (model_dir / "tokenizer").rglob("*") if p.is_file())
    bad = [p.name for p in tok if p.suffix not in TOKENIZER_SUFFIXES]
    if bad:
        raise CpfdError(
            f"{model_dir / 'tokenizer'}: unexpected files {bad[:3]} (only {TOKENIZER_SUFFIXES} are packaged)"
        )
    return [model_dir / WEIGHTS_FILE, model_dir / CONFIG_FILE, *tok]


def package_model(model_dir: str | Path, name: str) -> str:
    """Copy a student into the model store as ``name``; returns the new tag ``name:version``."""
    model_dir = Path(model_dir)
    if not NAME_RE.match(name):
        raise CpfdError(f"model name {name!r} is not a valid BentoML name (lowercase letters, digits, '.', '_', '-')")
    files = _files_to_copy(model_dir)
    meta = model_metadata(model_dir)
    spec = meta["spec"]
    if spec.get("dense_features") or meta.get("role", spec.get("role")) != "student":
        raise CpfdError(
            f"{model_dir}: is a teacher (dense features {spec.get('dense_features', [])[:3]}...); "
            "only students are packaged for serving"
        )
    labels = {"scenario": str(meta.get("scenario", "")), "role": "student", "method": str(meta.get("method", ""))}
    metadata = {
        "label_names": list(spec["label_names"]),
        "num_frames": spec["num_frames"],
        "image_size": spec["image_size"],
    }
    if meta.get("best_val_macro_f1") is not None:
        metadata["best_val_macro_f1"] = float(meta["best_val_macro_f1"])
    import bentoml

    with bentoml.models.create(name, labels=labels, metadata=metadata) as m:
        for f in files:
            dest = Path(m.path) / f.relative_to(model_dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest)
    return str(m.tag)


EXPORT_SUFFIX = ".bentomodel"


def export_model(tag: str, out_dir: str | Path) -> Path:
    """The stored model ``tag`` as ``out_dir/<name>-<version>.bentomodel``."""
    import bentoml

    model = bentoml.models.get(tag)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{model.tag.name}-{model.tag.version}{EXPORT_SUFFIX}"
    bentoml.models.export_model(str(model.tag), str(path))
    return path


def import_models(source: str | Path) -> dict[str, str]:
    """Import exported models into the store (BENTOML_HOME): a ``.bentomodel`` file, a folder searched for them
    (a pipeline run's artifacts, say), or a URL BentoML's file-system support opens (``s3://...``, with the
    matching fs package installed). Returns tag -> "imported" or "already in the store"."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    text = str(source)
    if "://" in text:
        files: list[str] = [text]
    else:
        path = Path(source)
        if not path.exists():
            raise CpfdError(f"{path}: no such file or folder to import models from")
        files = [str(path)] if path.is_file() else sorted(str(p) for p in path.rglob(f"*{EXPORT_SUFFIX}"))
        if not files:
            raise CpfdError(
                f"{path}: holds no exported model (*{EXPORT_SUFFIX}); the pipeline's package step writes them"
            )
    done = {}
    for f in files:
        try:
            done[str(bentoml.models.import_model(f).tag)] = "imported"
        except BentoMLException as e:
            tag = re.search(r"'?([a-z0-9._-]+:[a-z0-9]+)'? already exists", str(e))
            if not tag:
                raise CpfdError(f"{f}: cannot import ({e})") from None
            done[tag.group(1)] = "already in the store"
    return done
