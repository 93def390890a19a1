"""The statistics behind every comparison the suite states: ratios with 95% confidence intervals, significance,
and noise flags. scipy does the statistics; this module only decides what the independent units are.

Samples from one process share its state (allocator, caches, clock frequency, neighbours on a VM), so they are
not independent: two processes of the same program differ by more than their samples' spread suggests. So a
comparison rests on runs (processes): each run is summarized by its median, and the interval and the test are
computed over those per-run medians. With fewer than MIN_RUNS_FOR_RUN_INTERVAL runs on a side a percentile
bootstrap over runs is too narrow (2 runs a side: about 67% coverage), and no Mann-Whitney test over them can
reach p <= 0.05; the comparison then uses the samples of the run(s) and says so (`unit`), because run-to-run
noise is then not in the interval, and the report names no faster language from it (suite/report/compare.py).
The gate (suite/gate.py) always compares runs: it asks for enough of them itself.
"""

from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
# torch.utils.benchmark warns when IQR/median passes 10%; a cell noisier than this is flagged by name.
NOISY_IQR_OVER_MEDIAN = 0.10
# Per side, for an interval over runs (below: over the samples of the runs): 4 against 4 is the least with which
# a two-sided Mann-Whitney over runs can reach 0.05 (2/70 at complete separation). Not the gate's own least
# (suite/gate.toml, min_runs_to_judge), which rests on its alpha.
MIN_RUNS_FOR_RUN_INTERVAL = 4
BOOTSTRAP_RESAMPLES = 9999
SEED = 0  # the bootstrap's resampling: the same data give the same interval, run after run
UNIT_RUNS = "runs"
UNIT_SAMPLES = "samples of one run"


@dataclass(frozen=True)
class Comparison:
    """a against b: their ratio (a / b), its 95% interval, and one-sided p-values for a > b and a < b."""

    ratio: float
    low: float | None  # None: too few units for an interval
    high: float | None
    p_greater: float | None
    p_less: float | None
    unit: str  # UNIT_RUNS or UNIT_SAMPLES
    n_a: int  # units on each side
    n_b: int

    def excludes_one(self):
        return self.low is not None and (self.low > 1 or self.high < 1)

    def interval_text(self, digits=3):
        if self.low is None:
            return f"n/a (one side has {min(self.n_a, self.n_b)} of: {self.unit})"
        return f"{self.low:.{digits}f}–{self.high:.{digits}f}"


def iqr_over_median(samples):
    """Interquartile range over median: the spread measure torch.utils.benchmark warns about."""
    values = np.asarray(samples, dtype=float)
    median = np.median(values)
    return float(stats.iqr(values) / median) if median else float("inf")


def is_noisy(samples):
    return len(samples) >= 2 and iqr_over_median(samples) > NOISY_IQR_OVER_MEDIAN


def units(runs, min_runs=MIN_RUNS_FOR_RUN_INTERVAL):
    """(values, unit): one median per run when there are min_runs runs or more, else the pooled samples."""
    runs = [r for r in runs if len(r)]
    if len(runs) >= min_runs:
        return np.array([np.median(r) for r in runs]), UNIT_RUNS
    return np.array([s for r in runs for s in r], dtype=float), UNIT_SAMPLES


def _ratio_of_medians(a, b, axis=-1):
    return np.median(a, axis=axis) / np.median(b, axis=axis)


def ratio_interval(a, b):
    """scipy's percentile bootstrap of median(a) / median(b), two independent samples; None with < 2 on a side.
    Values without spread give an interval of no width (the ratio itself)."""
    if min(len(a), len(b)) < 2:
        return None
    result = stats.bootstrap((a, b), _ratio_of_medians, n_resamples=BOOTSTRAP_RESAMPLES, paired=False,
                             confidence_level=CONFIDENCE, method="percentile", vectorized=True,
                             random_state=np.random.default_rng(SEED))
    low, high = result.confidence_interval
    return (float(low), float(high)) if np.isfinite(low) and np.isfinite(high) else None


def one_sided_p(a, b, alternative):
    """Mann-Whitney U (exact for small samples without ties): the distribution-free test that a's values
    tend to be larger ("greater") or smaller ("less") than b's. None with no unit on a side."""
    if not len(a) or not len(b):
        return None
    return float(stats.mannwhitneyu(a, b, alternative=alternative).pvalue)


def compare_runs(a_runs, b_runs, min_runs=MIN_RUNS_FOR_RUN_INTERVAL):
    """Compare two sets of runs (each a list of samples): the ratio of medians a / b with its interval and
    p-values, at the level of runs when both sides have min_runs or more, else of samples."""
    (a, unit_a), (b, unit_b) = units(a_runs, min_runs), units(b_runs, min_runs)
    if unit_a != unit_b:  # one side has enough runs, the other not: compare samples on both sides
        a, b = units([[s for r in a_runs for s in r]])[0], units([[s for r in b_runs for s in r]])[0]
        unit_a = UNIT_SAMPLES
    interval = ratio_interval(a, b)
    return Comparison(ratio=float(_ratio_of_medians(a, b)), low=interval and interval[0],
                      high=interval and interval[1], p_greater=one_sided_p(a, b, "greater"),
                      p_less=one_sided_p(a, b, "less"), unit=unit_a, n_a=len(a), n_b=len(b))
