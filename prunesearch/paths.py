"""Where prunesearch keeps caches, and how it writes them so a killed process never leaves half a file."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """The project cache (``$PRUNESEARCH_CACHE`` or ``~/.cache/prunesearch``), created on demand."""
    root = Path(os.environ.get("PRUNESEARCH_CACHE", Path.home() / ".cache" / "prunesearch"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_dir(final: Path):
    """A context manager yielding a temporary directory that is renamed to ``final`` on success."""
    return _AtomicDir(final)


class _AtomicDir:
    def __init__(self, final: Path) -> None:
        self.final = final

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(dir=self.final.parent, prefix=f".{self.final.name}."))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.final.exists():
            shutil.rmtree(self.final)
        os.replace(self.tmp, self.final)
