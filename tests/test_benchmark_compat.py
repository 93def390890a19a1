"""The installed pytest-benchmark still has every internal suite/benchmark_compat.py uses. A failure names the
internal that moved: adapt suite/benchmark_compat.py (nothing else uses them), then pyproject's bound."""

from importlib.metadata import version

import pytest

from suite import benchmark_compat

FOUND = f"pytest-benchmark {version('pytest-benchmark')}"


def moved(internal):
    pytest.fail(f"{FOUND}: {internal} is gone or changed; suite/benchmark_compat.py relies on it", pytrace=False)


def test_the_performance_regression_exception():
    try:
        from pytest_benchmark.session import PerformanceRegression
    except ImportError:
        moved("pytest_benchmark.session.PerformanceRegression")
    if not (isinstance(PerformanceRegression, type) and issubclass(PerformanceRegression, Exception)):
        moved("pytest_benchmark.session.PerformanceRegression (an exception class)")
    assert benchmark_compat.is_performance_regression(PerformanceRegression("slower"))
    assert not benchmark_compat.is_performance_regression(RuntimeError("other"))


def test_the_session_on_the_config(request):
    session = benchmark_compat.benchmark_session(request.config)
    if session is None:
        moved("config._benchmarksession")
    for attribute in ("save", "autosave", "logger"):
        if not hasattr(session, attribute):
            moved(f"config._benchmarksession.{attribute}")
    if not callable(getattr(session.logger, "warning", None)):
        moved("config._benchmarksession.logger.warning")


class CountingTimer:
    """Each (start, end) pair of reads lasts 1, 2, 3 ... seconds: the recorded rounds are known."""

    def __init__(self):
        self.reads = 0

    def __call__(self):
        self.reads += 1
        return float(self.reads // 2) if self.reads % 2 == 0 else 0.0


@pytest.mark.benchmark(timer=CountingTimer(), disable_gc=False, warmup=False)
def test_the_recorded_rounds(benchmark):
    if not hasattr(benchmark, "disabled"):
        moved("the benchmark fixture's `disabled`")
    benchmark.group = "pytest-benchmark internals (a check, not a measurement)"
    benchmark.pedantic(lambda: None, rounds=3, iterations=1, warmup_rounds=0)
    if benchmark.disabled:
        pytest.skip("pytest-benchmark is disabled in this session (xdist or --benchmark-disable): it records nothing")
    try:
        samples = benchmark_compat.raw_samples(benchmark)
    except AttributeError:
        moved("the benchmark fixture's stats.stats.data")
    assert samples == [1.0, 2.0, 3.0], f"{FOUND}: stats.stats.data is not the recorded rounds: {samples}"
