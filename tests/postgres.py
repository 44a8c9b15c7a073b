"""A throwaway PostgreSQL server on loopback for the multi-worker tests, or the reason there is none.

``PRUNESEARCH_TEST_POSTGRES`` (an SQLAlchemy URL) names a server to use instead. Otherwise the server binaries
(``initdb``, ``pg_ctl``) are looked up on PATH and in Debian's /usr/lib/postgresql/<version>/bin, a cluster is
initialised in a temporary folder (as the ``postgres`` user when running as root: PostgreSQL refuses root) and
started on a free loopback port with trust authentication.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server() -> Iterator[tuple[str | None, str]]:
    """Yield ``(url, "")`` for a running server, or ``(None, reason)`` when none can be had."""
    if os.environ.get("PRUNESEARCH_TEST_POSTGRES"):
        yield os.environ["PRUNESEARCH_TEST_POSTGRES"], ""
        return
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        yield None, "psycopg2 is not installed (pip install 'prunesearch[postgres]')"
        return
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not initdb or not pg_ctl:
        yield None, "no PostgreSQL server binaries (initdb, pg_ctl) on this machine"
        return
    folder = Path(tempfile.mkdtemp(prefix="prunesearch-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("runuser"):
            yield None, "running as root without runuser: PostgreSQL will not start as root"
            return
        shutil.chown(folder, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()
    try:
        subprocess.run([*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "prunesearch"], check=True,
                       capture_output=True, timeout=120)
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-w", "-t", "60", "-o",
                        f"-c listen_addresses=127.0.0.1 -p {port} -k {folder}", "start"], check=True,
                       capture_output=True, timeout=120)
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        yield None, f"could not start PostgreSQL: {exc} {detail.decode(errors='replace')[-300:]}"
        shutil.rmtree(folder, ignore_errors=True)
        return
    try:
        yield f"postgresql+psycopg2://prunesearch@127.0.0.1:{port}/postgres", ""
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True,
                       timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
