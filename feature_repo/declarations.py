"""The declarations this repository is built from (the project config's ``feature_store`` section).

The Feast glue sets $CPFD_FEATURE_DECLARATIONS to the run's declarations and source paths; a plain
``feast apply`` in this folder uses the embedded default with its sources under ``data/``.
"""

from pathlib import Path

from cpfd.features import repo_inputs

DECLARATIONS, SOURCE_PATHS = repo_inputs(Path("data"))
