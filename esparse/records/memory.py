"""Peak memory of a stage (host RSS, accelerator allocations), as a record reports it, and giving
freed heap memory back to the OS."""

from __future__ import annotations

import os
import sys
import threading


def host_rss_bytes() -> int | None:
    """Resident set size of this process now (Linux ``/proc``); None where it cannot be read."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def release_freed_heap() -> None:
    """Hand the heap pages freed so far back to the OS (glibc ``malloc_trim``; elsewhere nothing).

    Tokenizing a corpus in one call frees ~0.3 GB on SmolLM2's 2.3 M-character calibration text that
    glibc keeps mapped, so every later stage's RSS peak carried it; trimming after the data stages
    returns it. No computed value changes."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl): nothing to trim this way
        pass


class PeakMemory:
    """Peak memory while the block runs: host RSS sampled by a thread (the caching allocators hide
    frees, so RSS is what a job scheduler sees), and the accelerator's ``max_memory_allocated`` when
    ``device`` is CUDA (reset on entry, so each stage gets its own peak even in one process)."""

    def __init__(self, device: str = "cpu", interval: float = 0.02):
        self.device, self.interval = str(device), interval
        self.host_peak: int | None = None
        self.device_peak: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while True:
            rss = host_rss_bytes()
            if rss is not None:
                self.host_peak = max(self.host_peak or 0, rss)
            if self._stop.wait(self.interval):
                return

    def _cuda(self) -> bool:
        import torch

        return self.device.startswith("cuda") and torch.cuda.is_available()

    def __enter__(self) -> PeakMemory:
        if self._cuda():
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        if host_rss_bytes() is not None:
            self._thread = threading.Thread(target=self._sample, name="esparse-peak-rss", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.host_peak = max(self.host_peak or 0, host_rss_bytes() or 0)
        else:  # no /proc (macOS): the process-lifetime peak is the best there is; Windows: none
            try:
                import resource

                scale = 1 if sys.platform == "darwin" else 1024
                self.host_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
            except ImportError:
                self.host_peak = None
        if self._cuda():
            import torch

            torch.cuda.synchronize(self.device)
            self.device_peak = int(torch.cuda.max_memory_allocated(self.device))

    def as_dict(self) -> dict[str, float | None]:
        gb = 1e9
        return {
            "host_peak_gb": None if self.host_peak is None else round(self.host_peak / gb, 4),
            "device_peak_gb": None if self.device_peak is None else round(self.device_peak / gb, 4),
        }
