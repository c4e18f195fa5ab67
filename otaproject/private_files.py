"""Keeps the server's state directory private: the database, secret key, PKI and signing keys.

Loaded by settings before Django starts, so it imports nothing from Django.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def restrict_umask() -> None:
    """Make every file and directory this process creates private to its user from the start."""
    os.umask(PRIVATE_UMASK)


def create_private_dir(path: Path) -> None:
    """Create `path` (and missing parents) as 0700 directories; leave an existing one as it is."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)


def write_private_file(path: Path, text: str) -> None:
    """Write a new file that is 0600 from its first byte, whatever the process umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def repair_private_tree(root: Path) -> list[str]:
    """Take group and other permissions off `root` and everything under it.

    Returns one line per path changed, "<path> <old mode> -> <new mode>", with paths below
    `root` relative to it. Symbolic links are neither followed nor changed.
    """
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    fixes = []
    for path in [root, *sorted(root.rglob("*"))]:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            continue
        old = stat.S_IMODE(info.st_mode)
        if stat.S_ISDIR(info.st_mode):
            new = PRIVATE_DIR_MODE
        else:
            # Keep the owner's own bits (a read-only key stays read-only).
            new = (old & 0o700) or PRIVATE_FILE_MODE
        if new == old:
            continue
        path.chmod(new)
        name = str(path) if path == root else str(path.relative_to(root))
        fixes.append(f"{name} {old:o} -> {new:o}")
    return fixes
