"""The pytest-benchmark internals the suite needs, behind functions named after what they do.

pytest-benchmark has no public API for these: its session (to keep a failed session from being saved as a
baseline, and its logger), the exception a failed --benchmark-compare-fail raises out of the terminal summary,
and the rounds a benchmark recorded. Nothing else in the suite touches pytest_benchmark's internals; pyproject
bounds pytest-benchmark below 6, and tests/test_benchmark_compat.py names the internal that moved when one does.
Imports are inside the functions: a moved internal fails the test that uses it, not the whole suite's start.
"""


def benchmark_session(config):
    """pytest-benchmark's session object (`config._benchmarksession`), or None when the plugin is not loaded."""
    return getattr(config, "_benchmarksession", None)


def log_warning(session, message):
    """A warning through pytest-benchmark's logger: shown with its own warnings, and in its summary."""
    session.logger.warning(message)


def cancel_saving(config, why):
    """Keep this session's data out of the benchmark storage (--benchmark-save / --benchmark-autosave), saying
    why; returns whether anything was going to be saved."""
    session = benchmark_session(config)
    if session is None or not (session.save or session.autosave):
        return False
    log_warning(session, f"torch-api-bench: not saving benchmark data: {why}")
    session.save = session.autosave = None
    return True


def is_performance_regression(error):
    """Whether `error` is what a failed --benchmark-compare-fail gate raises."""
    from pytest_benchmark.session import PerformanceRegression

    return isinstance(error, PerformanceRegression)


def raw_samples(benchmark):
    """The seconds of every round the `benchmark` fixture recorded, in order; None when pytest-benchmark is
    disabled (under pytest-xdist or --benchmark-disable it records nothing)."""
    if benchmark.disabled:
        return None
    return list(benchmark.stats.stats.data)
