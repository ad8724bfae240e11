"""The data gate: a Great Expectations suite per built dataset, derived from its scenario and a reference.

Checks the three splits together (with a ``split`` column), and the unlabelled pool when the dataset has one: the
column set and types of the data contract, the scenario's label set (pool rows: no label), each dense feature's
null rate (at most the reference's plus a margin), value ranges learned from the reference, no video_id in two
splits (a pool video is never labelled elsewhere), every split present and a minimum row count. Writes the result
as JSON and Data Docs HTML.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd

from cpfd.data.build import POOL_SPLIT, SPLITS
from cpfd.data.contract import MODALITY_COLUMNS, UNLABELLED, VIDEO_COLUMNS
from cpfd.errors import DataContractError

INT_TYPES = ["int64", "int32", "Int64", "Int32"]
FLOAT_TYPES = ["float32", "float64", "Float32", "Float64"]
STR_TYPES = ["object", "str", "string"]
TIME_TYPES = ["datetime64[ns]", "datetime64[us]", "datetime64[ms]"]  # GE cannot name tz-aware dtypes: checked in UTC
COLUMN_TYPES = {
    "video_id": INT_TYPES,
    "label": INT_TYPES,
    "event_timestamp": TIME_TYPES,
    "scenario": STR_TYPES,
    "title": STR_TYPES,
    "frames": STR_TYPES,
}


def read_dataset(dataset_dir: str | Path, splits: tuple[str, ...] = SPLITS) -> tuple[dict, pd.DataFrame]:
    """(manifest, the splits concatenated with a ``split`` column; the unlabelled pool too when it has one)."""
    root = Path(dataset_dir)
    if not (root / "manifest.json").exists():
        raise DataContractError(f"{root}: not a built dataset (no manifest.json); run `cpfd dataset build` first")
    manifest = json.loads((root / "manifest.json").read_text())
    if (manifest.get("pool") or {}).get("rows"):
        splits = (*splits, POOL_SPLIT)
    missing = [f"{s}.parquet" for s in splits if not (root / f"{s}.parquet").exists()]
    if missing:
        raise DataContractError(f"{root}: split file(s) {', '.join(missing)} missing")
    parts = [pd.read_parquet(root / f"{s}.parquet").assign(split=s) for s in splits]
    return manifest, pd.concat(parts, ignore_index=True)


def _utc_naive(df: pd.DataFrame) -> pd.DataFrame:
    """tz-aware timestamps as naive UTC, the form GE's type check can name."""
    ts = df.get("event_timestamp")
    if ts is not None and isinstance(ts.dtype, pd.DatetimeTZDtype):
        df = df.assign(event_timestamp=ts.dt.tz_convert("UTC").dt.tz_localize(None))
    return df


def suite_spec(
    label_names: list[str],
    scenario: str,
    feature_names: list[str],
    reference: pd.DataFrame,
    min_rows: int = 50,
    max_null_increase: float = 0.15,
    range_margin: float = 0.25,
    modalities: tuple[str, ...] = MODALITY_COLUMNS,
    pool: bool = False,
) -> list[tuple[str, dict, str]]:
    """The expectations as (GE class name, kwargs, what it checks), learned from ``reference``.

    The contract's columns are those of the scenario's ``modalities`` (a title-only dataset has no frames). With
    ``pool`` the ``pool`` split's rows are checked like the others except for labels: they carry none."""
    present = [c for c in VIDEO_COLUMNS if c not in MODALITY_COLUMNS or c in modalities]
    columns = [*present, *feature_names, "split"]
    specs: list[tuple[str, dict, str]] = [
        ("ExpectTableColumnsToMatchSet", {"column_set": columns, "exact_match": True}, "the contract's columns"),
        ("ExpectTableRowCountToBeBetween", {"min_value": min_rows}, f"at least {min_rows} rows"),
        (
            "ExpectColumnDistinctValuesToEqualSet",
            {"column": "split", "value_set": [*SPLITS, *([POOL_SPLIT] if pool else [])]},
            "no split is empty",
        ),
        ("ExpectColumnValuesToBeUnique", {"column": "video_id"}, "no video_id in two splits (or twice)"),
        ("ExpectColumnValuesToNotBeNull", {"column": "label"}, "every row labelled"),
        (
            "ExpectColumnValuesToBeInSet",
            {"column": "label", "value_set": list(range(len(label_names))), **_rows(f'split != "{POOL_SPLIT}"', pool)},
            f"labels in 0..{len(label_names) - 1} ({', '.join(label_names)})",
        ),
        ("ExpectColumnValuesToBeInSet", {"column": "scenario", "value_set": [scenario]}, f"only scenario {scenario}"),
    ]
    if pool:
        specs.append(
            (
                "ExpectColumnValuesToBeInSet",
                {"column": "label", "value_set": [UNLABELLED], **_rows(f'split == "{POOL_SPLIT}"', True)},
                "pool rows unlabelled (never in train, validation or test)",
            )
        )
    for column, types in COLUMN_TYPES.items():
        if column not in present:
            continue
        specs.append(("ExpectColumnValuesToBeInTypeList", {"column": column, "type_list": types}, f"{column} type"))
    for name in feature_names:
        ref = reference[name] if name in reference else pd.Series(dtype=float)
        null_rate = float(ref.isna().mean()) if len(ref) else 0.0
        allowed = min(1.0, null_rate + max_null_increase)
        specs.append(("ExpectColumnValuesToBeInTypeList", {"column": name, "type_list": FLOAT_TYPES}, f"{name} type"))
        specs.append(
            (
                "ExpectColumnValuesToNotBeNull",
                {"column": name, "mostly": round(1 - allowed, 6)},
                f"{name} null rate <= {allowed:.3f} (reference {null_rate:.3f})",
            )
        )
        values = ref.dropna()
        if len(values):
            lo, hi = float(values.quantile(0.005)), float(values.quantile(0.995))
            pad = range_margin * max(hi - lo, 1e-6)
            specs.append(
                (
                    "ExpectColumnValuesToBeBetween",
                    {"column": name, "min_value": lo - pad, "max_value": hi + pad, "mostly": 0.95},
                    f"{name} within the reference range [{lo - pad:.4g}, {hi + pad:.4g}] (95% of values)",
                )
            )
    return specs


def _rows(condition: str, when: bool) -> dict:
    """GE's row condition (pandas syntax), when ``when``."""
    return {"row_condition": condition, "condition_parser": "pandas"} if when else {}


def _describe(result, columns: set[str]) -> str:
    cfg = result.expectation_config
    column = cfg.kwargs.get("column")
    name = cfg.type + (f"({column})" if column else "")
    check = (cfg.meta or {}).get("check", "")
    res = result.result or {}
    mismatched = (res.get("details") or {}).get("mismatched")
    if column and column not in columns:
        detail = "column missing"
    elif mismatched:
        detail = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in mismatched.items() if v)
    elif res.get("unexpected_percent") is not None:
        detail = f"{res['unexpected_percent']:.1f}% unexpected, e.g. {res.get('partial_unexpected_list', [])[:3]}"
    else:
        detail = f"observed {res.get('observed_value')!r}"
    return f"{name}: {check} -- {detail}"


def _reference(reference_dir: str | Path, scenario: str):
    """Every split of another built dataset of the same scenario."""
    ref_manifest, reference = read_dataset(reference_dir)
    if ref_manifest["scenario"] != scenario:
        raise DataContractError(
            f"{reference_dir}: reference is scenario {ref_manifest['scenario']!r}, not {scenario!r}"
        )
    return reference


def validate_dataset(
    dataset_dir: str | Path,
    config,
    reference_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    min_rows: int = 50,
    max_null_increase: float = 0.15,
    range_margin: float = 0.25,
) -> dict:
    """Run the gate; returns {success, failed: [descriptions], result_json, data_docs, ...}.

    The reference is another built dataset (all its splits) or, by default, this dataset's train split.
    """
    logging.getLogger("great_expectations").setLevel(logging.ERROR)  # its INFO lines flood the CLI
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    manifest, df = read_dataset(dataset_dir)
    scenario = manifest["scenario"]
    label_names = config.scenario(scenario).label_names
    reference = _reference(reference_dir, scenario) if reference_dir is not None else df[df["split"] == "train"]
    reference = reference[reference["split"] != POOL_SPLIT]
    specs = suite_spec(
        label_names,
        scenario,
        manifest["feature_names"],
        reference,
        min_rows,
        max_null_increase,
        range_margin,
        tuple(manifest.get("modalities", MODALITY_COLUMNS)),
        pool=POOL_SPLIT in set(df["split"]),
    )

    out = Path(out_dir) if out_dir else Path(dataset_dir) / "validation"
    shutil.rmtree(out / "gx", ignore_errors=True)  # a fresh GX project per run: generated output only
    out.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(out.resolve()))
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    context.variables.save()
    name = f"cpfd_{scenario}"
    batch = (
        context.data_sources.add_pandas(name)
        .add_dataframe_asset("dataset")
        .add_batch_definition_whole_dataframe("all_splits")
    )
    suite = context.suites.add(
        gx.ExpectationSuite(
            name=name,
            expectations=[getattr(gxe, cls)(**kwargs, meta={"check": check}) for cls, kwargs, check in specs],
            meta={"scenario": scenario, "reference": str(reference_dir or "train split")},
        )
    )
    validation = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(name=name, validation_definitions=[validation], actions=[UpdateDataDocsAction(name="data_docs")])
    )
    run = checkpoint.run(batch_parameters={"dataframe": _utc_naive(df)})
    result = next(iter(run.run_results.values()))
    failed = [_describe(r, set(df.columns)) for r in result.results if not r.success]
    summary = {
        "success": bool(result.success),
        "scenario": scenario,
        "dataset": str(dataset_dir),
        "rows": len(df),
        "expectations": len(result.results),
        "failed": failed,
        "result_json": str(out / "result.json"),
        "data_docs": str(out / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"),
    }
    (out / "result.json").write_text(
        json.dumps({"summary": summary, "result": result.to_json_dict()}, indent=2, default=str)
    )
    return summary
