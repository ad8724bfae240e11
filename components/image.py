"""The one project image every component runs in (the project installed; nothing installed at run time)."""

import os
from importlib.metadata import version

# the tag the Dockerfile is built with (`make image`): the package version, defined once in pyproject.toml
DEFAULT_IMAGE = f"cpfd:{version('cpfd')}"


def project_image() -> str:
    """``CPFD_IMAGE`` when set (read when the components are imported), else ``DEFAULT_IMAGE``."""
    return os.environ.get("CPFD_IMAGE") or DEFAULT_IMAGE
