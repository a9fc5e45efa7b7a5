"""Statistics across training seeds: how much of a result is the method and how much is luck.

With the 3-5 seeds an experiment can afford, ``mean ± 1.96·SE`` covers the true mean only about
81-88 % of the time; the Student-t interval has its nominal coverage for normally distributed
results, so that is what is reported, with the method named next to the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

T_INTERVAL_METHOD = "Student-t interval over seeds (mean ± t[n-1]·s/√n)"
OUTLIER_METHOD = "leave-one-out Student-t prediction interval of the other seeds"


def t_interval(values: Sequence[float], level: float = 0.95) -> dict[str, float | int | str | None]:
    """Mean, sample standard deviation and the Student-t confidence interval of the mean.

    One value has no spread: its deviation and interval are ``None`` rather than a fake zero.
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        raise ValueError("no values")
    mean = float(x.mean())
    result: dict[str, float | int | str | None] = {
        "n": n,
        "mean": mean,
        "std": None,
        "ci_low": None,
        "ci_high": None,
        "level": level,
        "method": T_INTERVAL_METHOD,
    }
    if n >= 2:
        std = float(x.std(ddof=1))
        half = float(stats.t.ppf((1 + level) / 2, df=n - 1)) * std / math.sqrt(n)
        result.update(std=std, ci_low=mean - half, ci_high=mean + half)
    return result


def outlying_seeds(values: Mapping[int, float], level: float = 0.95) -> list[int]:
    """Seeds whose value lies outside the prediction interval formed by all the other seeds.

    For each seed, the other n-1 values give ``mean ± t[n-2] · s · √(1 + 1/(n-1))``, the range a
    new seed would fall in with probability ``level``. Needs at least three seeds; a seed whose
    peers agree exactly is an outlier as soon as it differs from them.
    """
    if len(values) < 3:
        return []
    flagged = []
    for seed, value in values.items():
        others = np.asarray([v for s, v in values.items() if s != seed], dtype=float)
        m = len(others)
        centre, spread = float(others.mean()), float(others.std(ddof=1))
        half = float(stats.t.ppf((1 + level) / 2, df=m - 1)) * spread * math.sqrt(1 + 1 / m)
        if abs(value - centre) > half:
            flagged.append(seed)
    return flagged
