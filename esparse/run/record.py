"""A record being filled in by a run, and the one-line summary a user reads at its end.

Every ``save()`` is an atomic rewrite, so a crash leaves an honest record with every finished number.
"""

from __future__ import annotations

import copy
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from typing import Any

from esparse.records import hashing, memory, provenance, store

log = logging.getLogger(__name__)

#: what a stage adds to the record: ``{"metrics": {...}, "details": {...}, "done": "<stage>"}``, any part
Added = dict[str, Any]


class Run:
    """A record being filled in; every ``save()`` is an atomic rewrite."""

    def __init__(self, cfg: dict[str, Any]):
        self.cfg = cfg
        #: called with each pruned block's summary (the W&B logger's history step), or None
        self.on_block: Callable[[dict[str, float]], None] | None = None
        self.hash = hashing.config_hash(cfg)
        self.path = store.record_path(cfg["results_dir"], self.hash)
        self.record: dict[str, Any] = {
            "config": cfg,
            "config_hash": self.hash,
            "status": "running",
            "metrics": {},
            "timings": {},
            "memory": {},
            "env": {**provenance.environment(cfg.get("device", "cpu")), "started_at": store.now_iso()},
            "details": {},
            "stages_done": [],
        }
        #: the stage being run (left at the stage that raised, so a stopped record can say where)
        self.stage_now: str | None = None

    def carry_over(self, previous: Mapping[str, Any]) -> None:
        """Keep what an earlier, unfinished run of this config finished: its stages and their
        numbers (a stage in ``stages_done`` is not run again where its result is kept)."""
        done = [s for s in previous.get("stages_done") or [] if s in ("prune", "save", "eval")]
        if not done:
            return
        for key in ("metrics", "timings", "memory", "details"):
            self.record[key] = copy.deepcopy(previous.get(key) or {})
        self.record["stages_done"] = list(done)
        self.record["resumed"] = {"from_started_at": (previous.get("env") or {}).get("started_at"), "kept": done}

    def merge(self, added: Added) -> None:
        """Put what a stage adds into the record (not saved yet): ``metrics`` and ``details``
        entries, a dict-valued detail gaining the entries given (``ppl_windows`` grows one corpus at a
        time), and ``done``, a stage now finished (``stages_done``)."""
        self.record["metrics"].update(added.get("metrics") or {})
        details = self.record["details"]
        for key, value in (added.get("details") or {}).items():
            if isinstance(value, dict) and isinstance(details.get(key), dict):
                details[key].update(value)
            else:
                details[key] = value
        if added.get("done"):
            self.record["stages_done"].append(added["done"])

    def add(self, added: Added) -> None:
        self.merge(added)
        self.save()

    def add_all(self, additions: Iterator[Added]) -> None:
        """Add and save each addition of a stage as it comes, so a crash keeps every finished number."""
        with closing(additions):  # type: ignore[type-var]
            for added in additions:
                self.add(added)

    def save(self) -> None:
        try:
            store.write_json_atomic(self.path, self.record)
        except OSError as e:  # a full disk names the record and the key that chose where it goes
            raise store.write_error(e, self.path, f"results_dir={self.cfg['results_dir']}") from None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage and record its peak host/device memory (``record["memory"][name]``), also
        when it fails."""
        mem, t = memory.PeakMemory(self.cfg.get("device", "cpu")), time.perf_counter()
        before, self.stage_now = self.stage_now, name
        try:
            with mem:
                yield
            self.stage_now = before
        finally:
            self.record["timings"][name] = round(time.perf_counter() - t, 3)
            self.record["memory"][name] = mem.as_dict()


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised as Ctrl-C's KeyboardInterrupt is, so a run stops the same way: the
    record ends ``interrupted`` with the stage it was in, the claim is released, the command exits
    128 + the signal's number (143, 129)."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        self.signal_name = signal.Signals(self.signum).name
        super().__init__(self.signal_name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


#: the signals a scheduler, a closed terminal or ``kill`` sends, handled like Ctrl-C
STOP_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


@contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise :class:`Interrupted` (once: a second signal while the
    first is being handled is logged and ignored, so the record and the claim are still put in
    order). The previous handlers come back on exit. Only in the main thread (Python's rule)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if fired:
            log.warning("%s again: still writing the record and releasing the claim", signal.Signals(signum).name)
            return
        fired.append(signum)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def pattern_label(pattern: Mapping[str, Any]) -> str:
    """What the run pruned to, from its numbers (``pattern=2:4 pattern.n=1`` is a 1:4 run), not the
    name of the preset it started from."""
    if pattern.get("kind") == "nm":
        return f"{pattern.get('n')}:{pattern.get('m')}"
    return str(pattern.get("name"))


def summary_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """The one-line result a user reads at the end of a run."""
    c, m = record["config"], record["metrics"]
    row = {
        "model": c["model"]["name"],
        "metric": c["metric"]["name"],
        "pattern": pattern_label(c["pattern"]),
        "shuffle": c["shuffle"]["name"],
    }
    for k, v in m.items():
        if k.startswith(("ppl/", "dense/ppl/", "zeroshot/avg")) or k == "sparsity/actual":
            row[k] = round(v, 3) if isinstance(v, float) else v
    row["seconds"] = round(sum(record.get("timings", {}).values()), 1)
    for where in ("host", "device"):  # the highest stage peak; none where nothing was measured
        peaks = [
            m[f"{where}_peak_gb"] for m in record.get("memory", {}).values() if m.get(f"{where}_peak_gb") is not None
        ]
        if peaks:
            row[f"peak_{where}_gb"] = round(max(peaks), 2)
    row["record"] = f"runs/{record['config_hash']}.json"
    return row
