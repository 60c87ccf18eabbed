import time

import pytest

from acmix_deploy.runners.timing import Budget, Timed, time_interleaved


def test_budget_takes_exactly_one_limit():
    with pytest.raises(ValueError):
        Budget()
    with pytest.raises(ValueError):
        Budget(seconds=1, iterations=2)
    with pytest.raises(ValueError):
        Budget(iterations=-1)


def test_budget_rules():
    assert Budget(iterations=3).done(3, 0.0) and not Budget(iterations=3).done(2, 99.0)
    b = Budget(seconds=1.0, min_iterations=4)
    assert not b.done(3, 5.0)  # too few rounds even though time is up
    assert b.done(4, 1.0) and not b.done(4, 0.5)
    assert Budget(seconds=100.0, max_iterations=10).done(10, 0.1)


def test_iterations_warmup_and_interleaved_order():
    calls: list[str] = []
    items = [Timed(fn=lambda: calls.append("a")), Timed(fn=lambda: calls.append("b"))]
    samples = time_interleaved(items, warmup=Budget(iterations=2), measure=Budget(iterations=5))
    assert [len(s) for s in samples] == [5, 5]
    assert calls.count("a") == calls.count("b") == 7
    # the order alternates every round: ab, ba, ab, ...
    rounds = ["".join(calls[i : i + 2]) for i in range(0, len(calls), 2)]
    assert rounds == ["ab", "ba"] * 3 + ["ab"]


def test_garbage_collector_is_off_while_measuring_only():
    import gc

    seen: list[bool] = []
    time_interleaved([Timed(fn=lambda: seen.append(gc.isenabled()))], Budget(iterations=2), Budget(iterations=3))
    assert seen == [True, True, False, False, False] and gc.isenabled()


def test_measured_time_includes_sync_and_is_in_milliseconds():
    items = [Timed(fn=lambda: time.sleep(0.004), sync=lambda: time.sleep(0.004))]
    (samples,) = time_interleaved(items, warmup=Budget(iterations=0), measure=Budget(iterations=3))
    assert len(samples) == 3
    assert all(8.0 <= s < 200.0 for s in samples)


def test_duration_budget_runs_at_least_min_iterations():
    # a zero-second budget is over before the first round: only min_iterations keeps it running
    items = [Timed(fn=lambda: None)]
    (samples,) = time_interleaved(items, Budget(seconds=0.0), Budget(seconds=0.0, min_iterations=3))
    assert len(samples) == 3


def test_duration_budget_runs_for_its_seconds():
    items = [Timed(fn=lambda: time.sleep(0.002))]
    t0 = time.perf_counter()
    (samples,) = time_interleaved(items, Budget(seconds=0.0), Budget(seconds=0.05, min_iterations=3))
    assert len(samples) >= 3
    assert time.perf_counter() - t0 >= 0.05


def test_empty_list():
    assert time_interleaved([], Budget(iterations=1), Budget(iterations=1)) == []
