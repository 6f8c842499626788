"""A claim on a sweep point: an O_EXCL lock file next to its record, holding the owner's pid.

Two sweeps on one ``results_dir`` then split the work: a point claimed by a live process is
skipped, not computed twice. A lock whose process is gone (kill -9, a crashed node on this host)
is stale and taken over; a lock from another host is trusted until it is removed by hand.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

UNREADABLE_LOCK_STALE_S = 60.0  # writing a lock takes microseconds; one unreadable for this long is debris


def lock_path(record: str | Path) -> Path:
    record = Path(record)
    return record.with_name(record.name + ".lock")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def owner(record: str | Path) -> dict[str, Any] | None:
    """Who holds the claim on ``record`` (pid, host, started_at), or None if nobody."""
    try:
        data = json.loads(lock_path(record).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict):
        return data
    try:  # being written right now, or garbage left by a crash: held by someone unknown, for a while
        age = time.time() - lock_path(record).stat().st_mtime
    except FileNotFoundError:
        return None
    return {"pid": None, "host": None, "age_s": age}


def is_stale(info: Mapping[str, Any]) -> bool:
    """A lock of this host whose process no longer exists, or an unreadable one older than a minute."""
    pid = info.get("pid")
    if pid is None:
        return info.get("age_s", 0.0) > UNREADABLE_LOCK_STALE_S
    return info.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid)


class Claim:
    """Held while a point is computed; :meth:`release` removes the lock (only if still ours)."""

    def __init__(self, record: str | Path, started_at: str):
        self.path = lock_path(record)
        self.info = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": started_at}

    def release(self) -> None:
        try:
            if json.loads(self.path.read_text(encoding="utf-8")).get("pid") == self.info["pid"]:
                self.path.unlink()
        except (OSError, ValueError):
            pass

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim(record: str | Path, started_at: str) -> Claim | None:
    """Claim the point of ``record``; None if a live process holds it. A stale lock is taken over."""
    c = Claim(record, started_at)
    c.path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(c.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            info = owner(record) or {}
            if not is_stale(info):
                return None
            log.warning("stale claim %s (pid %s is gone): taking it over", c.path, info.get("pid"))
            c.path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(c.info, fh)
        return c
    return None
