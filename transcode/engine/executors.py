"""Run shard tasks: inline, on a local process pool, or on a Dask distributed cluster, behind one interface."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any

from transcode.engine.heap import release_large_buffers
from transcode.engine.journal import entry_key
from transcode.engine.plan import ShardTask
from transcode.engine.shardbuild import EncodeSettings, ShardResult, StretchTarget, build_shard
from transcode.format.sidecar import partial_key
from transcode.storage import S3Options, Storage, open_storage


@dataclass(frozen=True)
class Job:
    """What every task needs besides its shard: where to read, where to write, how to encode."""

    source_url: str
    source_options: S3Options
    store_url: str
    store_options: S3Options
    settings: EncodeSettings
    stretch_sample: int = 0  # stretch statistics' sample size; 0: not collected
    threads: int | None = None  # encoding threads per shard; None: every core of the process running it


_STORAGES: dict[tuple, Storage] = {}


def _storage(url: str, options: S3Options) -> Storage:
    key = (url, options)
    if key not in _STORAGES:  # one client per process, reused by every task it runs
        _STORAGES[key] = open_storage(url, options)
    return _STORAGES[key]


def warm_up() -> None:
    """Import what a task needs (a worker's first task would otherwise pay for it)."""
    import numcodecs
    import rasterio  # noqa: F401  (landmasks)

    numcodecs.blosc.set_nthreads(1)


def _exit_with_parent(parent: int, interval: float = 1.0) -> None:
    """In a pool worker: end the process once its parent is gone. A parent killed outright (SIGKILL) cannot shut
    its pool down, and the workers would wait forever on a task queue whose write end they hold themselves."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def run_task(task: ShardTask, job: Job) -> ShardResult:
    """Build one shard; the function every executor runs (importable by worker processes)."""
    import numcodecs
    from threadpoolctl import threadpool_limits

    numcodecs.blosc.set_nthreads(1)  # parallelism comes from workers and their encoding threads, not from blosc
    release_large_buffers()  # freed windows and parts leave the worker's resident memory at once
    stretch = None
    if job.stretch_sample:
        entry = entry_key(task, task.fingerprint(job.settings.fingerprint()))
        stretch = StretchTarget(job.stretch_sample, partial_key(entry))
    # nor from BLAS (the stretch products): its own threads would spin beside the encoding threads (inline and on
    # Dask; pool workers start with one BLAS thread already)
    with threadpool_limits(1, user_api="blas"):
        return build_shard(task, job.settings, _storage(job.source_url, job.source_options),
                           _storage(job.store_url, job.store_options), stretch, job.threads)


@contextmanager
def _environment(**defaults: str) -> Iterator[None]:
    """Set environment variables that are not set yet, for processes started inside the block."""
    added = [k for k in defaults if k not in os.environ]
    os.environ.update({k: defaults[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


class Executor:
    """Runs `fn(task, job)` for many tasks and yields results as they finish (bounded in flight)."""

    name = "inline"

    def run(self, fn: Callable[[ShardTask, Job], Any], tasks: Sequence[ShardTask], job: Job) -> Iterator[Any]:
        for t in tasks:
            yield fn(t, job)

    def close(self) -> None:
        """Release workers."""


class ProcessExecutor(Executor):
    """A local pool of worker processes (spawned, so no client or lock is inherited across fork)."""

    name = "processes"

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_exit_with_parent, initargs=(os.getpid(),))
        # start the workers now, so their imports overlap the caller's planning; one BLAS thread each (numpy's
        # OpenBLAS pool would otherwise spin beside the encoders; the environment is read at import)
        with _environment(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1"):
            for _ in range(workers):
                self.pool.submit(warm_up)

    def run(self, fn, tasks, job):
        pending = set()
        it = iter(tasks)
        for t in it:  # keep at most 2 tasks per worker in flight: memory stays bounded
            pending.add(self.pool.submit(fn, t, job))
            if len(pending) >= 2 * self.workers:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                nxt = next(it, None)
                if nxt is not None:
                    pending.add(self.pool.submit(fn, nxt, job))
                yield f.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor(Executor):
    """Tasks on a Dask distributed cluster; one shard per task."""

    name = "dask"

    def __init__(self, address_or_client: Any) -> None:
        from distributed import Client

        if isinstance(address_or_client, Client):
            self.client, self._own = address_or_client, False
        else:
            self.client, self._own = Client(address_or_client), True

    def run(self, fn, tasks, job):
        from distributed import as_completed

        job_future = self.client.scatter(job, broadcast=True)

        def submit(t: ShardTask):
            return self.client.submit(fn, t, job_future, pure=False, key=f"shard-{t.name}-{id(t)}")

        # at most 2 tasks per worker thread in flight: the parent holds neither every task nor every future
        limit = 2 * max(1, sum(self.client.nthreads().values()))
        it = iter(tasks)
        in_flight = {submit(t) for t in islice(it, limit)}
        done = as_completed(list(in_flight))
        try:
            for f in done:
                in_flight.discard(f)
                nxt = next(it, None)
                if nxt is not None:
                    g = submit(nxt)
                    in_flight.add(g)
                    done.add(g)
                yield f.result()
        finally:
            for f in in_flight:
                f.cancel()

    def close(self) -> None:
        if self._own:
            self.client.close()


def make_executor(workers: int = 1, scheduler: Any = None) -> Executor:
    """Dask when a scheduler address (or Client) is given, else processes for workers > 1, else inline."""
    if scheduler is not None:
        return DaskExecutor(scheduler)
    if workers > 1:
        return ProcessExecutor(workers)
    return Executor()
