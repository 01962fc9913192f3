"""hf_superpositional.reproduction.runs: jobs in this process and in worker processes, order, errors, progress."""

from __future__ import annotations

import functools

import pytest

from hf_superpositional.reproduction.runs import Job, RunPool, cpu_seconds, square


def record(order: list, name: str, report=None) -> str:
    order.append(name)
    if report is not None:
        report((name, 0, 0.5))
    return name.upper()


def test_in_process_results_keep_the_job_order_and_costly_jobs_start_first(capsys):
    started: list[str] = []
    jobs = [Job(functools.partial(record, started, name), epochs=1, cost=cost) for name, cost in (("a", 1), ("b", 4), ("c", 1), ("d", 2))]
    with RunPool(num_workers=1) as pool:
        results = pool.run(jobs, desc="letters")
    assert results == ["A", "B", "C", "D"]
    assert started == ["b", "d", "a", "c"]  # by cost, ties in submission order
    err = capsys.readouterr().err
    assert "letters" in err and "epochs" in err and "4/4" in err  # both bars, the epoch bar fed by `report`


def test_a_jobs_error_reaches_the_caller_and_cpu_time_is_counted():
    # (Worker processes -- num_workers > 1 -- are exercised end to end by the recipes' slow tests: spawning
    # them imports the whole stack, tens of seconds on a busy machine.)
    with RunPool(num_workers=1) as pool:
        assert pool.run([Job(square, (x,), epochs=1) for x in (1, 2, 3)], show_progress=False) == [1, 4, 9]
        with pytest.raises(TypeError):
            pool.run([Job(square, (None,))], show_progress=False)
    assert cpu_seconds() > 0


def test_bad_pool_sizes():
    with pytest.raises(ValueError, match="num_workers"):
        RunPool(num_workers=0)
