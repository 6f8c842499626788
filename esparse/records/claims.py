"""A claim on a sweep point: an O_EXCL lock file next to its record, holding the owner's pid.

Two sweeps on one ``results_dir`` then split the work: a point claimed by a live process is
skipped, not computed twice. While held, a daemon thread refreshes the lock's ``heartbeat`` every
``ESPARSE_LOCK_HEARTBEAT_S`` seconds (default 30). A lock is stale, and taken over, when its process
is gone (same host: kill -9, a crash), or when its heartbeat is older than ``ESPARSE_LOCK_STALE_S``
seconds (default 600: another host that died, a reused pid, a hung holder). A lock written without a
heartbeat field counts from its file's modification time.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

UNREADABLE_LOCK_STALE_S = 60.0  # writing a lock takes microseconds; one unreadable for this long is debris
#: a held lock's heartbeat is refreshed this often (seconds) ...
DEFAULT_HEARTBEAT_S = 30.0
#: ... and a lock whose heartbeat is older than this (seconds) is stale, whoever holds it
DEFAULT_STALE_S = 600.0


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value != float("inf")):
        raise ValueError(f"{name}={raw!r}: expected a positive number of seconds (default {default:g})")
    return value


def heartbeat_s() -> float:
    return _env_seconds("ESPARSE_LOCK_HEARTBEAT_S", DEFAULT_HEARTBEAT_S)


def stale_s() -> float:
    return _env_seconds("ESPARSE_LOCK_STALE_S", DEFAULT_STALE_S)


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
    """Who holds the claim on ``record`` (pid, host, started_at, heartbeat), or None if nobody.
    ``age_s`` is the seconds since its heartbeat (the file's mtime for a lock without one)."""
    path = lock_path(record)
    try:
        text = path.read_text(encoding="utf-8")
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError:
        text, mtime = "", None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if mtime is None:
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return None
    if isinstance(data, dict):
        beat = data.get("heartbeat")
        beat = beat if isinstance(beat, (int, float)) and not isinstance(beat, bool) else mtime
        return {**data, "age_s": time.time() - beat}
    # being written right now, or garbage left by a crash: held by someone unknown, for a while
    return {"pid": None, "host": None, "age_s": time.time() - mtime}


def is_stale(info: Mapping[str, Any]) -> bool:
    """A lock of this host whose process no longer exists, one whose heartbeat is older than
    :func:`stale_s` (any host), or an unreadable one older than a minute."""
    pid, age = info.get("pid"), info.get("age_s", 0.0)
    if pid is None:
        return age > UNREADABLE_LOCK_STALE_S
    if age > stale_s():
        return True
    return info.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid)


def _why_stale(info: Mapping[str, Any]) -> str:
    if info.get("pid") is None:
        return f"unreadable for {info.get('age_s', 0.0):.0f} s"
    if info.get("age_s", 0.0) > stale_s():
        return f"pid {info.get('pid')} on {info.get('host')}: no heartbeat for {info.get('age_s', 0.0):.0f} s"
    return f"pid {info.get('pid')} is gone"


class Claim:
    """Held while a point is computed, its heartbeat refreshed by a daemon thread; :meth:`release`
    stops the heartbeat and removes the lock (only if still ours)."""

    def __init__(self, record: str | Path, started_at: str):
        self.path = lock_path(record)
        self.info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": started_at,
            "token": uuid.uuid4().hex,
            "heartbeat": time.time(),
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _ours(self) -> bool:
        try:
            return json.loads(self.path.read_text(encoding="utf-8")).get("token") == self.info["token"]
        except (OSError, ValueError, AttributeError):
            return False

    def beat(self) -> None:
        """Refresh the heartbeat (atomically: a reader sees the old lock or the new), if still ours."""
        if not self._ours():
            return
        self.info["heartbeat"] = time.time()
        tmp = self.path.with_name(f".{self.path.name}.{self.info['token']}.tmp")
        try:
            tmp.write_text(json.dumps(self.info), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as e:  # a full or vanished disk must not kill the run; the lock just ages
            log.warning("could not refresh the heartbeat of %s: %s", self.path, e)
            tmp.unlink(missing_ok=True)

    def _beat_forever(self, every: float) -> None:
        while not self._stop.wait(every):
            self.beat()

    def start_heartbeat(self) -> None:
        every = heartbeat_s()
        self._thread = threading.Thread(target=self._beat_forever, args=(every,), name="esparse-claim", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        try:
            if self._ours():
                self.path.unlink()
        except OSError:
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
            log.warning("stale claim %s (%s): taking it over", c.path, _why_stale(info))
            c.path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(c.info, fh)
        c.start_heartbeat()
        return c
    return None
