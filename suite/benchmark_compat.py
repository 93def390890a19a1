"""The pytest-benchmark internals the suite needs, behind functions named after what they do.

pytest-benchmark has no public API for these: its session (to keep a failed session from being saved as a
baseline, and its logger), the exception a failed --benchmark-compare-fail raises out of the terminal summary,
the rounds a benchmark recorded, this session's benchmarks as a stored run, and where runs are stored. Nothing
else in the suite touches pytest_benchmark's internals; pyproject bounds pytest-benchmark below 6, and
tests/test_benchmark_compat.py names the internal that moved when one does.
Imports are inside the functions: a moved internal fails the test that uses it, not the whole suite's start.
"""

import json


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


def session_run(config):
    """This session's benchmarks as pytest-benchmark would save them with --benchmark-save-data (machine_info,
    commit_info, every benchmark with its raw samples), through its JSON hooks; None when it recorded nothing."""
    session = benchmark_session(config)
    if session is None or not session.benchmarks:
        return None
    commit_info = config.hook.pytest_benchmark_generate_commit_info(config=config)
    config.hook.pytest_benchmark_update_commit_info(config=config, commit_info=commit_info)
    run = config.hook.pytest_benchmark_generate_json(config=config, benchmarks=session.benchmarks, include_data=True,
                                                     machine_info=session.get_machine_info(), commit_info=commit_info)
    return json.loads(json.dumps(run, default=str))  # what a reader of the saved file would see


def storage_folder(config):
    """The folder of --benchmark-storage (file storage only: the gate reads and writes files)."""
    return benchmark_session(config).storage.path


def machine_id(config):
    """The sub-folder pytest-benchmark saves this machine's runs in (e.g. Linux-CPython-3.11-64bit)."""
    from pytest_benchmark.utils import get_machine_id

    return benchmark_session(config).storage.default_machine_id or get_machine_id()
