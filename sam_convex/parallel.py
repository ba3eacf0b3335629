"""Independent per-mask jobs across processes: one pool per worker count, kept for the
life of the process (starting one costs a fork and a few ms; a fit costs milliseconds).

The jobs are pure functions of their arguments (the polygon fit uses no randomness and
runs the same numpy/OpenCV code in every process, one thread each), so the results are
the serial results, bit for bit, in the order given.

Processes, not threads: the fit is many small numpy operations, most of its time is
Python holding the GIL. The workers come from a fork server where there is one (a clean
process started once; forking the caller itself deadlocked: it holds the locks of torch's,
OpenCV's and the executor's threads), else they are spawned. As with any process pool,
a script that uses workers > 1 needs the `if __name__ == "__main__":` guard. A caller
killed outright takes its pool with it (each worker watches the caller's pid).
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

_POOLS: dict[int, ProcessPoolExecutor] = {}


def _init_worker(caller: int) -> None:
    """One thread per worker process (the workers are the parallelism), and a watch on
    the calling process (`_exit_without`)."""
    import cv2
    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(1)
    threadpool_limits(limits=1)
    threading.Thread(target=_exit_without, args=(caller,), daemon=True).start()


def _exit_without(caller: int, period_s: float = 1.0) -> None:
    """End this worker, and the fork server that made it, once the calling process is
    gone. A caller killed outright (SIGKILL, a crash) runs no exit handler, and its pool
    stayed behind: the fork server and each worker, about 0.5-0.8 GB each here."""
    while True:
        time.sleep(period_s)
        try:
            os.kill(caller, 0)
        except ProcessLookupError:
            break
        except PermissionError:  # the pid now belongs to another user's process
            break
    parent = os.getppid()
    if parent not in (caller, 1):  # the fork server
        os.kill(parent, signal.SIGTERM)
    os._exit(1)


def pool(workers: int) -> ProcessPoolExecutor:
    """The process's pool of `workers` processes (created on first use)."""
    if workers not in _POOLS:
        if "forkserver" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("forkserver")
            # Imported once in the server, inherited by every worker it forks.
            context.set_forkserver_preload(["sam_convex.polygon"])
        else:
            context = multiprocessing.get_context("spawn")
        _POOLS[workers] = ProcessPoolExecutor(workers, context, _init_worker, (os.getpid(),))
    return _POOLS[workers]


def shutdown() -> None:
    """Stop every pool (at exit, or to free the processes early)."""
    while _POOLS:
        _POOLS.popitem()[1].shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown)


def map_ordered(fn: Callable[[Any], Any], items: Sequence[Any], workers: int) -> list[Any]:
    """[fn(item) for item in items], on `workers` processes when workers > 1 and there is
    more than one item. `fn` and the items must pickle (a module-level function or a
    functools.partial of one). A pool whose worker died is discarded, and the error raised."""
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    try:
        return list(pool(workers).map(fn, items))
    except BrokenProcessPool:
        _POOLS.pop(workers, None)
        raise
