"""Many seeded training runs, spread over worker processes, with progress bars.

A comparison trains the same small model many times (arms x seeds). For a model this small one
single-threaded process per core is the fastest use of a CPU, and every run then sees the same load, so
per-run CPU times stay comparable. :class:`RunPool` keeps its worker processes for its whole life (a study
submits several batches; each fresh worker pays the imports once) and shows two bars: the runs finished and
the epochs trained, the latter fed by each run's ``report`` callback.

Example:
    >>> with RunPool(num_workers=1) as pool:
    ...     pool.run([Job(square, (3,)), Job(square, (4,))], desc="squares", show_progress=False)
    [9, 16]
"""

from __future__ import annotations

import resource
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Job", "RunPool", "cpu_seconds", "square"]

_REPORT_QUEUE = None  # set in each worker process by _worker_init


@dataclass(frozen=True)
class Job:
    """One call of a run function.

    Args:
        function: a module-level function (workers import it by name), called as
            ``function(*args, report=callback, **kwargs)``; ``callback((name, seed, accuracy or None))``
            advances the epoch bar by one.
        args: its positional arguments (picklable).
        kwargs: its keyword arguments (picklable).
        epochs: how many times the run calls ``report`` (the epoch bar's share of this job).
        cost: relative cost; costlier jobs start first so that no worker is left with a long job at the end.
    """

    function: Callable[..., Any]
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 0
    cost: float = 1.0


def square(value: float, report: Callable[[tuple], None] | None = None) -> float:
    """A trivial run function (for examples and tests): ``value ** 2``, reported as one epoch."""
    if report is not None:
        report(("square", int(value), None))
    return value * value


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (worker processes count once joined)."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def _worker_init(threads: int, report_queue=None) -> None:
    import warnings

    global _REPORT_QUEUE
    _REPORT_QUEUE = report_queue
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(threads)


def _call(function: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
    return function(*args, report=_REPORT_QUEUE.put if _REPORT_QUEUE is not None else None, **kwargs)


class RunPool:
    """Worker processes (``spawn``) that run :class:`Job` s; ``num_workers=1`` runs them in this process.

    Args:
        num_workers: processes (1: in this process, no pool).
        torch_threads: torch threads in each worker (and in this process when ``num_workers=1``).

    Use as a context manager; :meth:`run` may be called any number of times inside it.
    """

    def __init__(self, num_workers: int = 2, torch_threads: int = 1):
        if num_workers < 1 or torch_threads < 1:
            raise ValueError(f"`num_workers` and `torch_threads` must be >= 1, got {num_workers}, {torch_threads}.")
        self.num_workers = num_workers
        self.torch_threads = torch_threads
        self._executor = None
        self._queue = None

    def __enter__(self) -> RunPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Shut the workers down (waits for them, so their CPU time counts in :func:`cpu_seconds`)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _pool(self):
        if self._executor is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            context = mp.get_context("spawn")  # fork after torch has started threads is unsafe
            self._queue = context.Queue()  # handed to workers at start-up: a queue cannot travel with a job
            self._executor = ProcessPoolExecutor(
                max_workers=self.num_workers,
                mp_context=context,
                initializer=_worker_init,
                initargs=(self.torch_threads, self._queue),
            )
        return self._executor

    def run(self, jobs: Sequence[Job], desc: str = "runs", show_progress: bool = True) -> list[Any]:
        """Run every job; return their results in the order of ``jobs`` (a job's exception is raised here).

        Args:
            jobs: the jobs.
            desc: the run bar's label.
            show_progress: show the run and epoch bars (tqdm, on stderr).
        """
        from tqdm.auto import tqdm

        jobs = list(jobs)
        outer = tqdm(total=len(jobs), desc=desc, position=0, dynamic_ncols=True, disable=not show_progress)
        epoch_total = sum(job.epochs for job in jobs)
        inner = tqdm(
            total=epoch_total, desc="epochs", position=1, dynamic_ncols=True, disable=not show_progress or not epoch_total
        )

        def advance(message: tuple) -> None:
            name, seed, accuracy = message
            inner.set_postfix_str(f"{name} seed {seed}" + ("" if accuracy is None else f": {100 * accuracy:.1f}%"))
            inner.update(1)

        results: list[Any] = [None] * len(jobs)
        # Costliest first (stable: equal costs keep their order).
        order = sorted(range(len(jobs)), key=lambda index: -jobs[index].cost)
        try:
            if self.num_workers == 1:
                import torch

                torch.set_num_threads(self.torch_threads)
                for index in order:
                    job = jobs[index]
                    results[index] = job.function(*job.args, report=advance, **job.kwargs)
                    outer.update(1)
                return results
            from concurrent.futures import FIRST_COMPLETED, wait
            from queue import Empty

            pool = self._pool()
            pending = {pool.submit(_call, jobs[i].function, jobs[i].args, jobs[i].kwargs): i for i in order}
            while pending:
                done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                while True:
                    try:
                        advance(self._queue.get_nowait())
                    except Empty:
                        break
                for future in done:
                    index = pending.pop(future)
                    results[index] = future.result()  # re-raises a worker's exception here
                    outer.update(1)
            return results
        finally:
            inner.close()
            outer.close()
