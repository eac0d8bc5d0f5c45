"""Statistics machinery: intervals, quantiles and the words of a verdict (lessons 3-10).

Plumbing, not a lesson: the ideas are taught where they are used (lesson 5's paired
seeds, lesson 7's six verdicts at once) and their core lives in dl_utils (accuracy_se,
mean_se, paired_difference). Here: Wilson's interval for an accuracy, Student's t
computed for any level, Bonferroni's widening, and how numbers and verdicts are printed.
"""

import functools
import math

__all__ = [  # what dl_utils re-exports
    "wilson_interval", "format_accuracy", "t_975", "t_quantile", "bonferroni",
    "interval_verdict", "points", "interval",
]


def wilson_interval(acc: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval for an accuracy measured on n images, right even at 0% or 100%.

    The standard error above is the normal approximation to the binomial count: fine
    when there are plenty of both mistakes and right answers, useless at the extremes
    (at 100% it says "± 0", as if 250 right answers proved the model never errs).
    Wilson's interval stays honest there: 250 right out of 250 gives [98.5%, 100%],
    close to the "rule of three" (at most about 3/n of all images wrong, with one-sided
    95% confidence; this interval is two-sided, so a little wider).
    """
    centre = (acc + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(acc * (1 - acc) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def format_accuracy(acc: float, n: int) -> str:
    """'97.73% (95%: 97.43-98.01)': an accuracy with its 95% Wilson interval, one kind
    of interval for every accuracy the course prints. (acc ± 1.96 SE would do at 97.7%
    but is too narrow with few mistakes: '100.00% ± 0' on 250 images; Wilson stays
    honest.)"""
    low, high = wilson_interval(acc, n)
    return f"{100 * acc:.2f}% (95%: {100 * low:.2f}-{100 * high:.2f})"


# Student's t distribution: mean ± t * SE covers the true mean 95% of the time (t the
# 97.5th percentile) when the runs are independent and roughly normal. With few runs the
# SE itself is uncertain, hence a factor wider than the normal 1.96: 4.30 for 3 seeds.
def t_975(df: int) -> float:
    """The 97.5th percentile of t with df degrees of freedom (t_quantile below)."""
    return t_quantile(0.975, df)


@functools.cache  # (each costs ~0.02 s of Python; few df are ever asked for)
def t_quantile(q: float, df: int) -> float:
    """Student's t, the q-quantile for df degrees of freedom, computed rather than
    tabled (for any level, not just a printed table's): the density integrated by
    Simpson's rule from 0, and the point where the area reaches q - 0.5 found by
    bisection. Agrees with a printed t-table to its three decimals
    (tests/test_dl_utils.py)."""
    c = (math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2))
         / math.sqrt(df * math.pi))

    def area(x, steps=2000):  # from 0 to x under the density
        h = x / steps
        f = [c * (1 + (i * h) ** 2 / df) ** (-(df + 1) / 2) for i in range(steps + 1)]
        return h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))
    low, high = 0.0, 1000.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if area(mid) < q - 0.5 else (low, mid)
    return (low + high) / 2


def bonferroni(d: dict, comparisons: int, level: float = 0.95) -> dict:
    """A paired_difference whose interval is widened so that `comparisons` verdicts are
    right together with probability `level` (07 judges six at once).

    Bonferroni's rule: give each verdict 1 - (1 - level) / comparisons, e.g. 99.2% each
    for six at 95% together. Simple and safe; Holm's step-down version is a little less
    strict and the usual next step.
    """
    each = 1 - (1 - level) / comparisons
    half = (t_quantile(1 - (1 - each) / 2, d["n"] - 1) * d["se"] if d["n"] > 1
            else math.nan)
    return {**d, "low": d["mean"] - half, "high": d["mean"] + half, "level": each}


def interval_verdict(d: dict, better="better", worse="worse",
                     same="no clear difference") -> str:  # (05, 07, tables)
    """The word for a paired_difference: its 95% interval lies above 0, below 0, or
    spans it."""
    if d["n"] < 2:
        return "one seed: no verdict"
    return better if d["low"] > 0 else worse if d["high"] < 0 else same


def points(value, se=None):
    """An accuracy (a fraction) in points, with its standard error over seeds when there
    is one: '97.79 ± 0.05'; a tiny one keeps a digit ('± 0.004', never '± 0.00'), and
    seeds that all measured the same say so rather than claim no uncertainty at all."""
    text = f"{100 * value:.2f}"
    if se is None or math.isnan(se):
        return text
    if se == 0:
        return f"{text} (every seed equal)"
    return (f"{text} ± {100 * se:.2f}" if 100 * se >= 0.005
            else f"{text} ± {100 * se:.1g}")


def interval(d):
    """A paired difference as '+0.12 [-0.05, +0.29]' (points, 95% interval)."""
    if d["n"] < 2:
        return f"{100 * d['mean']:+.2f} (one seed: no interval)"
    if d["se"] < 1e-9:  # not certainty: accuracies on 5,000 images move in 0.02-point
        # steps, so a few seeds can give the very same difference (review 2026-12-07,
        # 1.21: the fair table's +1.22 on three seeds, checked in its results file)
        return f"{100 * d['mean']:+.2f} (every seed the same difference: no interval)"
    return f"{100 * d['mean']:+.2f} [{100 * d['low']:+.2f}, {100 * d['high']:+.2f}]"
