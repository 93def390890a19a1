"""The suite's one value for a measured quantity: its samples, grouped by the run (process) they came from.

Samples of one process share its state (allocator, caches, clock frequency, the neighbours on a VM), so every
comparison the suite states rests on runs (suite/stats.py). A RunSamples keeps the raw samples of each run with
their unit, and derives everything else when asked: pooled percentiles (numpy), per-run medians, the IQR/median
noise flag, the merge of replicates. The anchor is torch.utils.benchmark's Measurement. suite/metrics.py builds
them from results documents; the report, the gate and the sweep read them.
"""

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from suite import stats

# Units of time, as counts per second (integers: 13 ms is 13 / 1000 s exactly as the trainers' records divide it).
PER_SECOND = {"s": 1, "ms": 1000, "us": 1_000_000}


@dataclass(frozen=True)
class RunSamples:
    """runs: one tuple of samples per run, in run order (a run that measured nothing is an empty tuple);
    unit: what a sample is ("s", "ms", "images/s", ...)."""

    runs: tuple
    unit: str

    def __post_init__(self):
        object.__setattr__(self, "runs", tuple(tuple(float(s) for s in run) for run in self.runs))

    @classmethod
    def one_per_run(cls, values, unit):
        """One sample per run; None (not measured, e.g. start-up in old documents) makes the run empty."""
        return cls([() if v is None else (v,) for v in values], unit)

    @cached_property
    def pooled(self):
        """Every sample, sorted (a numpy array)."""
        return np.sort(np.fromiter((s for run in self.runs for s in run), dtype=float))

    def __bool__(self):
        return bool(self.pooled.size)

    @property
    def n_runs(self):
        """Runs with at least one sample."""
        return sum(1 for run in self.runs if run)

    @property
    def complete(self):
        """Whether every run measured something."""
        return bool(self.runs) and all(self.runs)

    def percentile(self, q):
        """Of the pooled samples, linear between the closest ranks (numpy's default)."""
        return float(np.percentile(self.pooled, q))

    @property
    def median(self):
        return self.percentile(50)

    @property
    def iqr_over_median(self):
        return stats.iqr_over_median(self.pooled)

    @property
    def noisy(self):
        """IQR/median of the pooled samples above stats.NOISY_IQR_OVER_MEDIAN (torch.utils.benchmark's warning)."""
        return stats.is_noisy(self.pooled)

    @property
    def run_medians(self):
        return np.array([np.median(run) for run in self.runs if run])

    @property
    def median_of_runs(self):
        """The median of the per-run medians: what a comparison over runs divides."""
        return float(np.median(self.run_medians))

    def summary(self):
        """Median, p10, p90, p99 and the sample count (the report's cells, CSV and JSON); None without samples."""
        if not self:
            return None
        return {"median": self.median, "p10": self.percentile(10), "p90": self.percentile(90),
                "p99": self.percentile(99), "n": int(self.pooled.size)}

    def merge(self, *others):
        """Replicates of the same quantity as one value: the runs of all, in order."""
        if any(o.unit != self.unit for o in others):
            raise ValueError(f"cannot merge samples in {self.unit} with {', '.join(o.unit for o in others)}")
        return replace(self, runs=self.runs + tuple(run for o in others for run in o.runs))

    def to(self, unit):
        """The same samples in another unit of time (PER_SECOND): seconds are what pytest-benchmark stores."""
        into, out_of = PER_SECOND[unit], PER_SECOND[self.unit]
        return RunSamples([[s * into / out_of for s in run] for run in self.runs], unit)

    def sample_runs(self):
        """The run number (1-based) of each pooled-in-run-order sample: how pytest-benchmark's extra_info keeps them."""
        return [i for i, run in enumerate(self.runs, 1) for _ in run]

    def flat(self):
        """Every sample in run order (not sorted): what pytest-benchmark stores as its rounds."""
        return [s for run in self.runs for s in run]

    @classmethod
    def from_flat(cls, samples, sample_runs, unit):
        """Samples in run order with each one's run number (sample_runs()) back into runs."""
        if len(samples) != len(sample_runs):
            raise ValueError(f"{len(samples)} samples but {len(sample_runs)} run numbers")
        runs = {}
        for run, sample in zip(sample_runs, samples):
            runs.setdefault(run, []).append(sample)
        return cls([runs[k] for k in sorted(runs)], unit)


def steady_epochs(doc):
    """Epochs 2..N of a results document. Epoch 1 also pays for what happens once (lazy initialization,
    allocator growth, workers' start, autotuning after the warm-up), so it is a metric of its own; a run of
    one epoch has no steady state."""
    return doc["epochs"][1:]


def table_epochs(doc):
    """What the results table shows of a run: the steady state, or epoch 1 when that is all the run has."""
    return steady_epochs(doc) or doc["epochs"][:1]
