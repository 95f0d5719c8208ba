"""Run independent pieces of model work on several Python threads, one torch thread each.

PyTorch's own parallelism (OpenMP) splits every operation over its threads and makes them meet
at a barrier after it. When other processes compete for the cores, the kernel deschedules one
of those threads and the others spin at the barrier for it, burning the time it needs: with two
busy processes on two cores a diarization ran 28 times slower. Whole batches (windows, backbone
chunks) handed to separate Python threads, each running torch on a single thread, never wait
for one another, so a busy machine only slows them down by the share of the cores it takes.
torch releases the GIL inside its operations, so the threads do run at the same time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import TypeVar

import torch

Item = TypeVar("Item")
Result = TypeVar("Result")


def threaded_map(function: Callable[[Item], Result], items: Sequence[Item]) -> Iterator[Result]:
    """`function` over `items`, in order, on `torch.get_num_threads()` threads of one torch thread each.

    The results are yielded in the calling thread, so callbacks run there (progress reports,
    cancels). Gradients stay off in the threads, as they are in the caller's inference mode.
    """
    wanted = torch.get_num_threads()
    threads = min(wanted, len(items))
    if threads <= 1:
        yield from map(function, items)
        return

    def run(item: Item) -> Result:
        # Per thread; set back afterwards because torch also keeps the last value as the
        # default for threads started later, which must keep the caller's count.
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                return function(item)
        finally:
            torch.set_num_threads(wanted)

    limit_heaps()  # before the threads' first allocations make their heaps
    pool = ThreadPoolExecutor(threads, thread_name_prefix="diarist-model")
    try:
        futures = [pool.submit(run, item) for item in items]
        for future in futures:
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        release_freed_memory()


M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
MODEL_ARENAS = 2  # heaps for all the model threads together


@cache
def _libc_function(name: str) -> Callable[..., int] | None:
    """A glibc function by name, or None elsewhere (musl, macOS)."""
    libc = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(libc), name, None) if libc else None


def limit_heaps() -> None:
    """Let glibc keep at most MODEL_ARENAS heaps (arenas) for the model threads.

    By default each new thread may get a heap of its own (up to 8 per core), and each keeps the
    memory freed in it: precision-2 on a 60-minute file peaked at 989 MB of RSS, at 883 MB with
    two heaps, in the same time. An operator's own MALLOC_ARENA_MAX wins.
    """
    mallopt = _libc_function("mallopt")
    if mallopt is not None and "MALLOC_ARENA_MAX" not in os.environ:
        mallopt(M_ARENA_MAX, MODEL_ARENAS)


def release_freed_memory() -> None:
    """Hand the memory that threads freed back to the system (glibc; elsewhere a no-op).

    glibc gives each thread its own heap (arena) and keeps what is freed there for that heap's
    next use. The model threads free their buffers at the end of each page, and the clustering
    and reconstruction that follow allocate on the calling thread's heap, so without this the
    threads' free memory stayed counted on top: a 4-hour file peaked at 1.2 GB of RSS.
    """
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)
