"""The one project image every component runs in (the project installed; nothing installed at run time)."""

import os

DEFAULT_IMAGE = "cpfd:0.1.0"


def project_image() -> str:
    """``CPFD_IMAGE`` when set (read when the components are imported), else ``DEFAULT_IMAGE``."""
    return os.environ.get("CPFD_IMAGE") or DEFAULT_IMAGE
