"""Statistics across seeds: the interval's coverage is measured, not assumed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kedro_repro.seed_stats import outlying_seeds, t_interval


def test_t_interval_matches_the_textbook_values():
    result = t_interval([1.0, 2.0, 3.0])
    # t(0.975, df=2) = 4.302653; s = 1; half width = t * s / sqrt(3)
    assert result["mean"] == pytest.approx(2.0)
    assert result["std"] == pytest.approx(1.0)
    assert result["ci_high"] - 2.0 == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert "Student-t" in result["method"]


def test_one_seed_has_no_spread_rather_than_a_fake_zero():
    result = t_interval([0.1])
    assert result["std"] is None and result["ci_low"] is None and result["n"] == 1


@pytest.mark.parametrize("n", [3, 5])
def test_coverage_is_nominal_where_the_normal_interval_falls_short(n):
    """Simulated: 4000 experiments of n normal seeds; how often does each interval hold the mean?"""
    rng = np.random.default_rng(n)
    draws = rng.normal(0.05, 0.01, size=(4000, n))
    t_hits = normal_hits = 0
    for values in draws:
        interval = t_interval(values)
        t_hits += interval["ci_low"] <= 0.05 <= interval["ci_high"]
        half = 1.96 * values.std(ddof=1) / math.sqrt(n)
        normal_hits += values.mean() - half <= 0.05 <= values.mean() + half
    assert 0.93 <= t_hits / 4000 <= 0.97
    assert normal_hits / 4000 < 0.90  # mean ± 1.96·SE: about 81 % at n=3, 88 % at n=5


def test_an_outlying_seed_is_flagged_and_typical_ones_are_not():
    wers = {1: 0.101, 2: 0.098, 3: 0.103, 4: 0.100, 5: 0.180}
    assert outlying_seeds(wers) == [5]
    assert outlying_seeds({1: 0.1, 2: 0.5}) == []  # two seeds cannot tell which one is odd
    assert outlying_seeds({1: 0.1, 2: 0.1, 3: 0.1}) == []
