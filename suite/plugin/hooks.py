"""pytest-benchmark's hooks (machine facts, like-with-like comparison, no baseline from a failed session), the gate
and the report at session end, and the count of trainer processes the session started."""

from collections import Counter
from pathlib import Path

import pytest

from suite import benchmark_compat
from suite import harness as H
from suite.plugin.config import usage


def configure_session(config):
    """The gate's options checked (usage errors before anything runs), and the session's bookkeeping."""
    config.bench_ab_commit = None
    if config.getoption("gate") or config.getoption("gate_ab"):
        check_gate_options(config)
    elif config.getoption("gate_baseline") or config.getoption("gate_thresholds"):
        usage("--gate-baseline and --gate-thresholds are options of the gate: add --gate (or --gate-ab REV)")
    config.bench_result_files = []
    config.bench_ab_docs = {}  # (model, mode, lang) -> the A/B baseline commit's documents, or why they failed
    config.bench_trainer_starts = Counter(H.TRAINER_STARTS)  # a session in a session counts its own


def check_gate_options(config):
    from suite import gate

    rev = config.getoption("gate_ab")
    if rev is not None and (config.getoption("gate") or config.getoption("gate_baseline")):
        usage("--gate-ab REV compares with REV's trainers run in this session: leave out --gate and "
              "--gate-baseline, which compare with a stored baseline")
    try:
        limits = gate.load_thresholds(config.getoption("gate_thresholds") or gate.THRESHOLDS)
    except gate.GateError as err:
        usage(str(err))
    repeats, option = config.bench_run.repeats, "--gate-ab" if rev is not None else "--gate"
    if repeats < limits["min_runs_to_judge"]:
        usage(f"{option} needs --repeats {limits['min_runs_to_judge']} or more (a verdict rests on runs, not on the "
              f"samples of one process; suite/gate.toml min_runs_to_judge), got --repeats {repeats}")
    # The A/B sides have as many runs as each other: too few, and no p-value can reach alpha (no verdict ever).
    needed = next(r for r in range(limits["min_runs_to_judge"], 1000) if gate.smallest_p(r, r) <= limits["alpha"])
    if rev is not None and repeats < needed:
        usage(f"--gate-ab needs --repeats {needed} or more: with {repeats} runs a side the smallest possible p is "
              f"{gate.smallest_p(repeats, repeats):.3g}, above alpha {limits['alpha']} (suite/gate.toml)")
    if config.getoption("gate_baseline") and not Path(config.getoption("gate_baseline")).is_file():
        usage(f"--gate-baseline file not found: {config.getoption('gate_baseline')}")
    if rev is not None:
        config.bench_ab_commit = H.resolve_commit(rev)
        if config.bench_ab_commit is None:
            usage(f"--gate-ab: git does not know the revision {rev!r} in {H.ROOT}")


def pytest_sessionstart(session):
    session.config.bench_session = session
    if session.config.getoption("gate"):  # what is stored before this session: a save of its own is no baseline
        from suite import gate

        session.config.bench_stored_before = set(gate.baseline_files(benchmark_compat.storage_folder(session.config)))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    """Before pytest-benchmark saves: a failed or interrupted session must not become a baseline.
    After: the report of this session's results, when --report asks for one."""
    if exitstatus != 0:
        benchmark_compat.cancel_saving(session.config, f"the session ended with exit status {int(exitstatus)} "
                                       "(failed or interrupted); a baseline holds complete runs only")
    yield
    out = session.config.getoption("report")
    files = session.config.bench_result_files
    if out and files:
        from suite.report import build_report

        path = build_report(files, Path(out))
        print(f"\ntorch-api-bench: report written to {path}")


@pytest.hookimpl(wrapper=True)
def pytest_terminal_summary(terminalreporter, config):
    """pytest-benchmark signals a failed --benchmark-compare-fail gate by raising out of the terminal summary,
    which prints a traceback. Its own "Performance has regressed" lines are already shown: end with one line
    and exit status 1 instead. Then --gate, our own gate; last, how many trainer processes the session started."""
    if config.bench_run.why_not_official:  # said when the data was prepared and again where a reader looks last
        terminalreporter.write_line(f"torch-api-bench: {config.bench_run.data_line()}", yellow=True, bold=True)
    try:
        result = yield
    except Exception as err:
        if not benchmark_compat.is_performance_regression(err):
            raise
        terminalreporter.write_line("torch-api-bench: benchmark gate failed: performance has regressed against "
                                    "the baseline (the lines above name each benchmark)", red=True, bold=True)
        _fail_session(config, pytest.ExitCode.TESTS_FAILED)
        result = None
    if config.getoption("gate") or config.getoption("gate_ab"):
        _run_gate(terminalreporter, config)
    terminalreporter.write_line(f"torch-api-bench: {H.trainer_starts_line(config.bench_trainer_starts)}")
    return result


def _fail_session(config, code):
    if config.bench_session.exitstatus == pytest.ExitCode.OK:
        config.bench_session.exitstatus = code


def _run_gate(terminalreporter, config):
    from suite import gate
    from suite.plugin.ab import interleaved_baseline

    def write(line):
        terminalreporter.write_line(line, red=line.startswith("torch-api-bench gate: REGRESSION"))
    if config.bench_session.exitstatus != pytest.ExitCode.OK:
        write("torch-api-bench gate: not run: the session failed (a gate compares complete runs only)")
        return
    run = benchmark_compat.session_run(config)
    if run is None:
        write("torch-api-bench gate: error: pytest-benchmark recorded nothing (disabled, e.g. under pytest-xdist: "
              "run with -p no:xdist)")
        return _fail_session(config, pytest.ExitCode.USAGE_ERROR)
    try:
        baseline, label = interleaved_baseline(config, run) if config.bench_ab_commit else (None, None)
        storage = benchmark_compat.storage_folder(config)
        own_saves = set(gate.baseline_files(storage)) - getattr(config, "bench_stored_before", set())
        code = gate.run_gate(run, storage, label or config.getoption("gate_baseline"),
                             config.getoption("gate_thresholds") or gate.THRESHOLDS,
                             benchmark_compat.machine_id(config), write, baseline=baseline, ignore=own_saves)
    except gate.GateError as err:
        write(f"torch-api-bench gate: error: {err}")
        return _fail_session(config, pytest.ExitCode.USAGE_ERROR)
    if code:
        _fail_session(config, pytest.ExitCode.TESTS_FAILED)


def pytest_benchmark_update_machine_info(config, machine_info):
    """What a stored baseline was measured on (suite/machine.py); the commit is in pytest-benchmark's commit_info,
    the suite's configuration in each benchmark's extra_info."""
    from suite.machine import machine_facts

    machine_info["torch_api_bench"] = machine_facts()


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark's own, which would dump both machine_infos whole
def pytest_benchmark_compare_machine_info(config, benchmarksession, machine_info, compared_benchmark):
    """One line naming only the machine fields that differ; and like with like: the stored benchmarks of another
    configuration are taken out of the comparison, with one line saying what differs."""
    from suite import gate

    line = gate.machine_line({"machine_info": machine_info}, compared_benchmark)
    if line:
        benchmark_compat.log_warning(benchmarksession, f"torch-api-bench: {line}")
    compared_benchmark["machine_info"] = machine_info  # said above: pytest-benchmark's check need not repeat it
    ours = config.bench_run.identity()
    stored = compared_benchmark["benchmarks"]
    kept = [b for b in stored if b.get("extra_info", {}).get("suite_config") == ours]
    if len(kept) < len(stored):
        theirs = next(b.get("extra_info", {}).get("suite_config") for b in stored if b not in kept)
        what = "; ".join(gate.differences(ours, theirs)) if theirs else "stored without its configuration"
        benchmark_compat.log_warning(benchmarksession, (
            f"torch-api-bench: {len(stored) - len(kept)} of {len(stored)} stored benchmark(s) not compared, "
            f"no verdict: their configuration differs (this run vs stored): {what}"))
    stored[:] = kept
