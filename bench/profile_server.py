"""Run a Python program (`manage.py runota`) with a sampling profiler of all its threads.

    python bench/profile_server.py --out DIR manage.py runota

Every `--interval` seconds a thread records the Python stack of every other thread. On SIGUSR2
(and at exit) it writes DIR/profile-<n>.txt: the functions seen most often, inclusive and as
the innermost frame, over the samples since the previous report, and a memory report (RSS,
the C heap in use, Python objects by type and, with PYTHONTRACEMALLOC set, the lines that
allocated most). Then it starts counting afresh, so each phase of a benchmark gets its own
report. Only threads the kernel shows running count (a thread waiting for the database, a
lock, the GIL or the reactor's poll sleeps), so the shares are of the server's CPU time.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import ctypes
import gc
import os
import runpy
import signal
import sys
import threading
import time
import tracemalloc
from pathlib import Path


def _running(native_id: int | None) -> bool:
    """Whether the kernel has the thread on a CPU or ready for one (state R).

    A thread waiting for the database, a lock, the GIL or the reactor's poll sleeps (S), so
    only threads doing work are counted.
    """
    try:
        with open(f"/proc/self/task/{native_id}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "R"
    except (OSError, IndexError):
        return False


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                     "uordblks", "fordblks", "keepcost")
    ]  # fmt: skip


def _c_heap_in_use() -> int | None:
    """Bytes malloc() has handed out and not had back (glibc), Python's large objects included."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Sampler:
    def __init__(self, out: Path, interval: float) -> None:
        self.out = out
        self.interval = interval
        self.lock = threading.Lock()
        self.reports = 0
        self._reset()
        self.thread = threading.Thread(target=self._run, name="profile-sampler", daemon=True)

    def _reset(self) -> None:
        self.inclusive: collections.Counter[str] = collections.Counter()
        self.leaf: collections.Counter[str] = collections.Counter()
        self.busy = self.idle = self.samples = 0
        self.started = time.monotonic()

    def _run(self) -> None:
        own = threading.get_ident()
        while True:
            time.sleep(self.interval)
            native = {thread.ident: thread.native_id for thread in threading.enumerate()}
            frames = sys._current_frames()
            with self.lock:
                self.samples += 1
                for ident, frame in frames.items():
                    if ident == own:
                        continue
                    if not _running(native.get(ident)):
                        self.idle += 1
                        continue
                    code = frame.f_code
                    self.busy += 1
                    self.leaf[f"{code.co_filename}:{code.co_name}"] += 1
                    seen = set()
                    depth = 0
                    while frame is not None and depth < 200:
                        code = frame.f_code
                        seen.add(f"{code.co_filename}:{code.co_firstlineno}:{code.co_name}")
                        frame = frame.f_back
                        depth += 1
                    self.inclusive.update(seen)

    def report(self, *_: object) -> None:
        # Runs in the profiled program's main thread: it must never raise there.
        try:
            self._report()
        except Exception:
            import traceback

            traceback.print_exc()

    def _report(self) -> None:
        with self.lock:
            inclusive, leaf = self.inclusive, self.leaf
            busy, idle, samples, seconds = (
                self.busy,
                self.idle,
                self.samples,
                (time.monotonic() - self.started),
            )
            self._reset()
        self.reports += 1
        root = str(Path.cwd()) + os.sep
        lines = [
            f"{seconds:.1f} s, {samples} samples, {busy} busy thread-samples, {idle} idle",
            "",
            "inclusive (share of busy thread-samples):",
        ]
        for name, count in inclusive.most_common(60):
            lines.append(f"  {100 * count / max(busy, 1):5.1f}%  {name.replace(root, '')}")
        lines += ["", "innermost frame:"]
        for name, count in leaf.most_common(40):
            lines.append(f"  {100 * count / max(busy, 1):5.1f}%  {name.replace(root, '')}")
        lines += ["", *memory_report(root)]
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"profile-{self.reports}.txt").write_text("\n".join(lines) + "\n")


def memory_report(root: str) -> list[str]:
    gc.collect()
    heap = _c_heap_in_use()
    lines = [f"RSS {_rss() / 2**20:.1f} MiB; C heap in use {(heap or 0) / 2**20:.1f} MiB"]
    if tracemalloc.is_tracing():
        traced, _ = tracemalloc.get_traced_memory()
        lines.append(f"traced by tracemalloc (Python allocations) {traced / 2**20:.1f} MiB")
    counts: collections.Counter[str] = collections.Counter()
    sizes: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        # A metaclass may make __module__ a property; such types are few, named by class name.
        module = kind.__dict__.get("__module__", kind.__module__)
        name = f"{module if isinstance(module, str) else '?'}.{kind.__qualname__}"
        counts[name] += 1
        sizes[name] += sys.getsizeof(obj)
    lines += ["", "objects the collector tracks, by type (shallow size):"]
    for name, size in sizes.most_common(40):
        lines.append(f"  {size / 2**10:10.0f} KiB  {counts[name]:8d}  {name}")
    if tracemalloc.is_tracing():
        lines += ["", "allocated by (tracemalloc, line):"]
        for stat in tracemalloc.take_snapshot().statistics("lineno")[:40]:
            frame = stat.traceback[0]
            where = f"{frame.filename.replace(root, '')}:{frame.lineno}"
            lines.append(f"  {stat.size / 2**10:10.0f} KiB  {stat.count:8d}  {where}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("program")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    sampler = Sampler(options.out, options.interval)
    signal.signal(signal.SIGUSR2, sampler.report)
    atexit.register(sampler.report)
    sampler.thread.start()
    sys.argv = [options.program, *options.args]
    sys.path.insert(0, str(Path(options.program).resolve().parent))
    runpy.run_path(options.program, run_name="__main__")


if __name__ == "__main__":
    main()
