"""Records on disk: one JSON per config hash, written atomically, read defensively."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any


def record_path(results_dir: str | Path, chash: str) -> Path:
    return Path(results_dir) / "runs" / f"{chash}.json"


def write_json_atomic(path: str | Path, data: Any, compact: bool = False) -> Path:
    """Temp file in the same dir + fsync + rename: readers see the old file or the new, never half.

    ``compact`` writes no indentation or spaces (files of long number lists stay small)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; records are meant to be shared
    try:
        with os.fdopen(fd, "w") as fh:
            layout: dict[str, Any] = {"separators": (",", ":")} if compact else {"indent": 2}
            json.dump(data, fh, sort_keys=False, default=str, **layout)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_record(path: str | Path) -> dict[str, Any] | None:
    """The record at ``path``, or None if absent or unreadable (an unreadable one is redone)."""
    try:
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) else None


def unreadable_why(path: str | Path) -> str | None:
    """Why the file at ``path`` is not a record (a phrase), or None if it is one or is absent."""
    p = Path(path)
    if not p.exists():
        return None
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except IsADirectoryError:
        return "a directory"
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except json.JSONDecodeError as e:
        return f"not valid JSON ({e.msg}, line {e.lineno}; truncated?)"
    except OSError as e:
        return f"unreadable ({e.strerror or type(e).__name__})"
    return None if isinstance(rec, dict) else f"not a JSON object (a {type(rec).__name__})"


def load_record(path: str | Path) -> dict[str, Any] | None:
    """The record at ``path``, or None if absent. One that is not a record is moved aside to
    ``<name>.corrupt-<UTC time>`` with a warning (never a crash, never silently overwritten)."""
    why = unreadable_why(path)
    if why is None:
        return read_record(path)
    p = Path(path)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    aside = p.with_name(f"{p.name}.corrupt-{stamp}")
    os.replace(p, aside)
    logging.getLogger(__name__).warning("record %s is %s: moved aside to %s; the point is recomputed", p, why, aside)
    return None


def is_done(path: str | Path) -> bool:
    rec = read_record(path)
    return bool(rec) and rec.get("status") == "done"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
