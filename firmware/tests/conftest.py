from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_storage(settings, tmp_path: Path) -> None:
    """Each test gets its own media, package and signing-key directories."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PACKAGE_DIR = tmp_path / "packages"
    settings.SIGNING_KEY_DIR = tmp_path / "signing"
