import math

import numpy as np
import pytest

from acmix_deploy.bench.stats import CV_WARN, LatencyStats, median_ratio, paired_ratio, summarize


def test_summary_of_known_samples():
    s = summarize([10, 1, 9, 2, 8, 3, 7, 4, 6, 5], batch=4)
    assert s.iterations == 10 and s.batch == 4
    assert s.mean_ms == pytest.approx(5.5)
    assert s.median_ms == pytest.approx(5.5)
    # numpy linear interpolation on 1..10: position q * (n - 1)
    assert s.p90_ms == pytest.approx(9.1)
    assert s.p95_ms == pytest.approx(9.55)
    assert s.p99_ms == pytest.approx(9.91)
    assert (s.min_ms, s.max_ms) == (1.0, 10.0)
    assert s.std_ms == pytest.approx(math.sqrt(sum((x - 5.5) ** 2 for x in range(1, 11)) / 9))
    assert s.cv == pytest.approx(s.std_ms / 5.5)
    assert s.throughput_ips == pytest.approx(4 * 1000 / 5.5)
    assert s.noisy


def test_single_sample_and_constant_samples_have_zero_cv():
    one = summarize([2.0], batch=1)
    assert one.std_ms == 0 and one.cv == 0 and one.p99_ms == 2.0 and one.throughput_ips == pytest.approx(500)
    const = summarize(np.full(50, 4.0), batch=8)
    assert const.cv == 0 and not const.noisy and const.throughput_ips == pytest.approx(2000)


def test_cv_threshold_is_strictly_above_five_percent():
    # two samples a, b: std(ddof=1) = |a - b| / sqrt(2); choose a CV of exactly 5 % and just above
    mean = 100.0
    d = CV_WARN * mean * math.sqrt(2) / 2
    at = summarize([mean - d, mean + d], 1)
    assert at.cv == pytest.approx(CV_WARN)
    assert not at.noisy
    above = summarize([mean - 1.1 * d, mean + 1.1 * d], 1)
    assert above.noisy and above.cv > CV_WARN


@pytest.mark.parametrize("bad", [[], [1.0, -1.0], [float("nan")], [float("inf")]])
def test_invalid_samples_are_refused(bad):
    with pytest.raises(ValueError):
        summarize(bad, 1)


def test_batch_must_be_positive():
    with pytest.raises(ValueError):
        summarize([1.0], 0)


def test_ratio_and_paired_ratio():
    model = summarize([20, 22, 21], 1)
    base = summarize([10, 10, 11], 1)
    assert median_ratio(model, base) == pytest.approx(21 / 10)
    # per-round ratios 2.0, 2.2, 21/11 -> median 2.0
    assert paired_ratio([20, 22, 21], [10, 10, 11]) == pytest.approx(2.0)
    # a drift hitting both sides of a round cancels in the paired ratio
    assert paired_ratio([10, 40, 10], [5, 20, 5]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        paired_ratio([], [])


def test_to_dict_has_every_field():
    d = summarize([1, 2, 3], 2).to_dict()
    assert set(d) == {f for f in LatencyStats.__dataclass_fields__}
