"""MkDocs hook (mkdocs.yml ``hooks:``): the configuration reference, generated at build time from the pydantic models
of ``cpfd.config`` (each field's type, embedded default and description), so the page cannot fall behind the code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from mkdocs.structure.files import File, Files

PAGE = "reference/configuration.md"


def _type(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is Union or type(annotation).__name__ == "UnionType":
        return " \\| ".join(_type(a) for a in args)
    if origin in (list, tuple, set):
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping {_type(args[0])} → {_type(args[1])}" if args else "mapping"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _models(annotation: Any):
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in get_args(annotation):
        yield from _models(arg)


def _cell(value: Any) -> str:
    import json

    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return "see its section below"
    if isinstance(value, dict | list) and len(json.dumps(value)) > 60:
        return "see the embedded default"
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return f"`{text}`" if text != "" else '`""`'


def _section(cls, path: str, defaults: dict | None, out: list[str], seen: set) -> None:
    from pydantic_core import PydanticUndefined

    doc = " ".join((cls.__doc__ or "").split()).replace("``", "`")
    out += [f"## `{path}`", "", doc, ""] if doc else [f"## `{path}`", ""]
    out += ["| field | type | default | description |", "|---|---|---|---|"]
    nested = []
    for name, field in cls.model_fields.items():
        if defaults is not None and name in defaults:
            default = _cell(defaults[name])
        elif field.default is not PydanticUndefined:
            default = _cell(field.default)
        elif field.default_factory is not None:
            default = _cell(field.default_factory())
        else:
            default = "required"
        description = " ".join((field.description or "").split()).replace("|", "\\|").replace("``", "`")
        out.append(f"| `{name}` | {_type(field.annotation)} | {default} | {description} |")
        for model in _models(field.annotation):
            if model not in seen:
                seen.add(model)
                value = (defaults or {}).get(name)
                nested.append((model, f"{path}.{name}", value if isinstance(value, dict) else None))
    out.append("")
    for model, sub, value in nested:
        _section(model, sub, value, out, seen)


def configuration_reference() -> str:
    from cpfd.config import ProjectConfig, load_config
    from cpfd.config_base import default_config_path

    embedded = load_config().model_dump()
    out = [
        "# Configuration reference",
        "",
        "Generated from the pydantic models in `cpfd/config.py` and `cpfd/features.py` when the site is built. A run "
        "reads the embedded default (`cpfd/defaults/project.yaml`), your YAML on top (`--config`), then `--set "
        "section.field=value` overrides; `cpfd config show [--scenario NAME]` prints the result. The *default* column "
        "is the embedded default's value; an unknown or misspelt key is an error that names it and suggests the "
        "closest field. Per-scenario `train` and `distill` entries override the project-wide sections field by "
        "field.",
        "",
        f"The embedded default declares {len(embedded['scenarios'])} scenarios: "
        + ", ".join(f"`{s['name']}`" for s in embedded["scenarios"])
        + f" (`{default_config_path().relative_to(default_config_path().parents[2])}`).",
        "",
    ]
    seen: set = set()
    for name, field in ProjectConfig.model_fields.items():
        for model in _models(field.annotation):
            if model not in seen:
                seen.add(model)
                value = embedded.get(name)
                _section(model, name, value if isinstance(value, dict) else None, out, seen)
    return "\n".join(out) + "\n"


PARAMETERS = re.compile(r"<!-- cpfd:pipeline-parameters (\S+) -->")


def pipeline_parameters(path: Path) -> str:
    """The run form of a compiled pipeline (its root parameters: type, default, description) as a Markdown table."""
    import yaml

    spec = next(yaml.safe_load_all(path.read_text()))
    params = spec["root"]["inputDefinitions"].get("parameters", {})
    rows = ["| parameter | type | default | description |", "|---|---|---|---|"]
    for name, p in params.items():
        default = _cell(p["defaultValue"]) if "defaultValue" in p else "required"
        description = " ".join((p.get("description") or "").split()).replace("|", "\\|")
        rows.append(f"| `{name}` | {p['parameterType'].lower()} | {default} | {description} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """``<!-- cpfd:pipeline-parameters FILE -->``: the parameters of that compiled pipeline, read when the site is
    built (the published YAML is what a test keeps equal to a fresh compile)."""
    root = Path(config["config_file_path"]).parent
    return PARAMETERS.sub(lambda m: pipeline_parameters(root / m.group(1)), markdown)


# results pages, generated from the benchmark JSON that holds their figures (benchmarks/tables.py renders them)
RESULTS = {
    "quality": (
        "The quality benchmark: the five bundled scenarios",
        "`cpfd bench quality`: every variant trained per scenario and seed on the embedded synthetic data.",
    ),
    "quality_mechanisms": (
        "The quality benchmark: the mechanism scenarios",
        "`cpfd bench quality` on the three scenarios built to show where confidence weighting should help "
        "(docs: [the synthetic generator](../generator_v2.md)).",
    ),
}


def results_page(root: Path, name: str) -> str:
    import json

    from cpfd.benchmarks.tables import to_markdown

    title, intro = RESULTS[name]
    result = json.loads((root / "benchmarks" / "results" / f"{name}.json").read_text())
    figure = (
        "![quality.png: F1, gains with intervals, confidence, weights](../quality.png)\n\n" if name == "quality" else ""
    )
    head = f"# {title}\n\n{intro} Generated from `benchmarks/results/{name}.json` when the site is built.\n\n"
    return head + figure + to_markdown(result)


def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, PAGE, content=configuration_reference()))
    root = Path(config["config_file_path"]).parent
    for name in RESULTS:
        files.append(File.generated(config, f"results/{name}.md", content=results_page(root, name)))
    for png in sorted((root / "benchmarks" / "results").rglob("*.png")):  # the benchmarks' figures, where they lie
        uri = "assets/" + png.relative_to(root).as_posix()
        files.append(File.generated(config, uri, abs_src_path=str(png)))
    return files


def on_page_content(html: str, page, config, files) -> str:
    """mkdocs-typer2's legacy engine leaves the CLI page empty when its ``typer`` command fails (not on PATH, an
    import error): fail the build instead."""
    from mkdocs.exceptions import PluginError

    if page.file.src_uri == "reference/cli.md":
        from cpfd.cli.main import app

        missing = [c.name for c in app.registered_commands if c.name and f"cpfd {c.name}" not in html]
        names = [g.name for g in app.registered_groups if f"cpfd {g.name}" not in html]
        if "cpfd generate" not in html or missing or names:
            raise PluginError(
                "reference/cli.md: mkdocs-typer2 rendered no CLI reference (is the venv's bin folder on PATH, "
                f"so that `typer cpfd.cli.main utils docs` runs?); missing: {missing + names or 'everything'}"
            )
    return html
