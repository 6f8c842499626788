"""Records on disk: one JSON per config hash, written atomically, read defensively."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from esparse.records import hashing

#: the states a record can be in: being computed, finished, failed, stopped by a signal or Ctrl-C
STATUSES = ("running", "done", "failed", "interrupted")
#: the parts of a record that are JSON objects when present
OBJECT_KEYS = ("metrics", "timings", "memory", "env", "details")


def record_path(results_dir: str | Path, chash: str) -> Path:
    return Path(results_dir) / "runs" / f"{chash}.json"


class WriteError(OSError):
    """A file esparse writes could not be written (a full disk, no permission): the message names the
    path and the config key that chose it, and the errno is the OS's."""

    def __init__(self, errno: int | None, message: str):
        super().__init__(errno, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def write_error(e: OSError, path: str | Path, key: str) -> WriteError:
    """``e`` (raised writing ``path``) as a :class:`WriteError` naming ``path`` and ``key``."""
    if isinstance(e, WriteError):
        return e
    return WriteError(e.errno, f"{key}: cannot write {path}: {e.strerror or e}")


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


def staging_dir(final: str | Path) -> Path:
    """The temporary sibling :func:`staged_dir` writes ``final`` in (same filesystem: a rename)."""
    final = Path(final).expanduser()
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


@contextmanager
def staged_dir(final: str | Path, marker: str) -> Iterator[Path]:
    """Write a directory whole or not at all: the block writes into a temporary sibling, which is
    renamed to ``final`` when the block completes and removed if it fails (no half directory is ever
    at ``final``). An existing ``final`` is replaced only if it is empty or holds ``marker`` (an
    earlier one of ours); any other directory raises FileExistsError before anything is written."""
    final = Path(final).expanduser()
    if final.exists() and not (final.is_dir() and (not any(final.iterdir()) or (final / marker).is_file())):
        raise FileExistsError(f"{final} exists and is not an empty directory or one holding {marker}; not replaced")
    tmp = staging_dir(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        old = final.with_name(f".{final.name}.old-{os.getpid()}") if final.exists() else None
        if old is not None:
            os.replace(final, old)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_record(path: str | Path) -> dict[str, Any] | None:
    """The record at ``path``, or None if absent or unreadable (an unreadable one is redone)."""
    try:
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) else None


def unreadable_why(path: str | Path) -> str | None:
    """Why the file at ``path`` is not a record of the config its name is the hash of (a phrase),
    or None if it is one or is absent."""
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
    return invalid_why(rec, p.stem)


def invalid_why(rec: Any, chash: str) -> str | None:
    """Why ``rec`` (parsed JSON) is not the record of config hash ``chash`` (a phrase), or None.

    A record proves itself: a JSON object whose ``config`` hashes to its ``config_hash``, which is
    its file's name, in a known ``status``, its parts of the expected types; anything else (another
    config's record copied under this name, a hand edit, a half-migrated file) is not trusted."""
    if not isinstance(rec, dict):
        return f"not a JSON object (a {type(rec).__name__})"
    cfg = rec.get("config")
    if not isinstance(cfg, dict):
        return "a JSON object without a 'config' object"
    stated = rec.get("config_hash")
    if stated != chash:
        return f"a record whose config_hash {stated!r} is not its file name's {chash!r}"
    try:
        actual = hashing.config_hash(cfg)
    except Exception as e:  # a config that cannot be hashed is no config of ours
        return f"a record whose config cannot be hashed ({type(e).__name__}: {e})"
    if actual != chash:
        return f"a record whose config hashes to {actual}, not {chash} (another config's record?)"
    if rec.get("status") not in STATUSES:
        return f"a record with status {rec.get('status')!r}, not one of {list(STATUSES)}"
    for key in OBJECT_KEYS:
        if key in rec and not isinstance(rec[key], dict):
            return f"a record whose {key!r} is a {type(rec[key]).__name__}, not an object"
    done = rec.get("stages_done", [])
    if not (isinstance(done, list) and all(isinstance(s, str) for s in done)):
        return f"a record whose 'stages_done' is {done!r}, not a list of stage names"
    return None


def load_record(path: str | Path) -> dict[str, Any] | None:
    """The record at ``path``, or None if absent. One that is not a record of its name's config
    (:func:`unreadable_why`) is moved aside to ``<name>.corrupt-<UTC time>`` with a warning naming
    why (never a crash, never silently overwritten, never trusted)."""
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
