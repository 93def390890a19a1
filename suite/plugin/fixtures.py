"""The session's fixtures: the configuration with its data prepared, the C++ build, the datasets, the results
folder, and the cache of trainer runs every correctness test shares.

The run cache: trainer_run(lang, argv) starts that trainer once per session for each (language, argv, env), and
every test that asks again gets the same run (its validated results); trainer_pair(argv) runs both languages at
once (two one-thread processes on two cores); trainer_processes(argv) is the same for runs that are meant to fail
(bad input); tiny_run(lang, mode) is the canonical tiny run of a mode (suite/plugin/tiny.py).
"""

import subprocess
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest

from bench.vocab import LANGUAGES, PARAM_COUNTS, PROGRAMS
from suite import harness as H
from suite.plugin import tiny
from suite.plugin.config import OFFICIAL, SMOKE


@pytest.fixture(scope="session")
def run_config(request):
    """The suite's configuration. With --data official, the official set is prepared here, once (downloaded to the
    cache on first use; offline, the synthetic set takes its place, said loudly, with the offline preset)."""
    cfg = request.config.bench_run
    if cfg.data == OFFICIAL and cfg.data_dir is None:
        from filelock import FileLock

        from bench.prepare import cache_dir, default_data

        cache_dir().mkdir(parents=True, exist_ok=True)
        with FileLock(cache_dir() / ".default-data.lock"):  # xdist workers: one download, one synthetic set
            folder, why = default_data()
        cfg = request.config.bench_run = cfg.with_official(folder, why)
        live_line(request.config, "torch-api-bench")(cfg.data_line())
    return cfg


@pytest.fixture(scope="session")
def cache_dir():
    from bench.data import cache_dir

    return cache_dir()


@pytest.fixture(scope="session")
def smoke_data(cache_dir):
    """The synthetic smoke set, generated once and cached across sessions."""
    from bench.data import synthetic_dir

    s = SMOKE
    return H.ensure_synthetic(cache_dir / synthetic_dir(s["synth_train"], s["synth_test"], 0),
                              s["synth_train"], s["synth_test"])


@pytest.fixture(scope="session")
def tiny_data(cache_dir):
    """The tiny synthetic set of the fast correctness tests (suite/plugin/tiny.py DATA), cached."""
    from bench.data import synthetic_dir

    train, test, seed = tiny.DATA
    return H.ensure_synthetic(cache_dir / synthetic_dir(train, test, seed), train, test, seed=seed)


@pytest.fixture(scope="session")
def bench_data(run_config, request):
    return run_config.data_dir or request.getfixturevalue("smoke_data")


@pytest.fixture(scope="session")
def expected_params():
    """Parameter counts of the CIFAR ResNets (torchvision's layout with a 3x3 stem and 10 classes)."""
    return PARAM_COUNTS


@pytest.fixture(scope="session")
def cpp_build(request):
    """Build once per session. Returns the executable or the BuildError, which every C++ test reports."""
    try:
        return H.build_cpp(Path(request.config.getoption("build_dir")))
    except H.BuildError as err:
        return err


@pytest.fixture(scope="session")
def cpp_exe(cpp_build):
    if isinstance(cpp_build, H.BuildError):
        pytest.fail(str(cpp_build), pytrace=False)
    return cpp_build


@pytest.fixture(scope="session")
def exe_for(request):
    """exe_for(lang): the C++ executable for 'cpp' (built on first use), None for 'python'."""
    def get(lang):
        return request.getfixturevalue("cpp_exe") if lang == "cpp" else None
    return get


@pytest.fixture(scope="session")
def results_dir(request, tmp_path_factory):
    path = request.config.getoption("results_dir")
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
    request.config.bench_results_dir = Path(path).resolve() if path else tmp_path_factory.mktemp("results")
    return request.config.bench_results_dir


def live_line(config, label):
    """A writer of one trainer's stderr lines (which trainer, each epoch's progress) to the terminal as they
    come, past pytest's output capture: a long run shows what it is doing without -s."""
    capman = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")

    def write(line):
        if reporter is None or capman is None:
            return
        with capman.global_and_fixture_disabled():
            reporter.write_line(f"[{label}] {line.rstrip()}")
    return write


def assert_one_line_error(proc, lang, code, *fragments):
    """Exit `code` and exactly one stderr line `<prog>: error: ...` containing every fragment (key fragments,
    not a library's exact wording); returns that line."""
    assert proc.returncode == code, f"exit {proc.returncode}, stderr:\n{proc.stderr[-2000:]}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith(f"{PROGRAMS[lang]}: error: ")]
    assert len(errors) == 1, proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="session")
def one_line_error():
    """The check every bad-input test makes (assert_one_line_error), as a fixture for test modules."""
    return assert_one_line_error


@pytest.fixture(scope="session")
def inner_session_imports():
    """What a session run in this process (pytester) imports and cannot import twice, imported first (a session
    fixture: before pytester's snapshot of the loaded modules, which it restores after each test): torchvision
    (the machine facts read its version) imports torch._dynamo, whose modules register torch libraries."""
    import torchvision  # noqa: F401


@pytest.fixture
def suite_session(inner_session_imports, pytester, monkeypatch, cache_dir):
    """suite_session(test_file, *args) -> (result, what it printed): a session of one of the suite's test files
    (tests/...), in this process (pytester's runpytest_inprocess, from its own folder), with this session's data
    cache (pytester points HOME at its folder). What it printed: stdout, stderr and the warnings it raised outside
    its tests (pytest-benchmark's, at the session's end), as a session of its own would print them."""
    monkeypatch.setenv("BENCH_CACHE", str(cache_dir))

    def run(test_file, *args):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = pytester.runpytest_inprocess(str(H.ROOT / "tests" / test_file), "-p", "no:cacheprovider", "-p",
                                                  "no:xdist", *args)
        told = "".join(f"\n{w.category.__name__}: {w.message}" for w in caught)
        return result, result.stdout.str() + result.stderr.str() + told
    return run


# ---- the run cache -------------------------------------------------------------------------------------------

class Ran(NamedTuple):
    """One trainer process of the session's cache, whatever its exit."""

    proc: subprocess.CompletedProcess  # its exit status, stdout and stderr
    folder: Path  # its own folder ("{out}" in its argv), empty but for what the argv wrote there
    seconds: float  # wall time, from before the process started to after it exited


class Run(NamedTuple):
    """One trainer run of the session's cache that wrote its results."""

    doc: dict  # the validated results document
    folder: Path  # the run's own folder ("{out}" in its argv): results.json and what the argv wrote there
    stderr: str
    seconds: float  # wall time, from before the process started to after it exited


class RunCache:
    """Each (language, argv, env) started once per session, two at a time when several are asked for at once."""

    def __init__(self, exe_for, tmp_path_factory):
        self.exe_for, self.tmp_path_factory = exe_for, tmp_path_factory
        self.done = {}  # (lang, argv, env) -> Ran
        self.read = {}  # Ran -> its Run, or why it has none (read and validated once)

    def start(self, lang, argv, env, exe):
        out = self.tmp_path_factory.mktemp(lang)
        t0 = time.monotonic()
        # In its own folder: nothing a run does may depend on the checkout being its working folder.
        proc = H.run_trainer(lang, [a.replace("{out}", str(out)) for a in argv], exe, env=env, cwd=out)
        return Ran(proc, out, time.monotonic() - t0)

    def processes(self, specs):
        """The processes of `specs` ((lang, argv, env) each), the missing ones two at a time."""
        keys = [(lang, tuple(argv), tuple(sorted((env or {}).items()))) for lang, argv, env in specs]
        missing = list(dict.fromkeys(k for k in keys if k not in self.done))
        exes = {lang: self.exe_for(lang) for lang, _, _ in missing}  # the build, in this thread
        with ThreadPoolExecutor(max_workers=2) as pool:
            for key, ran in zip(missing, pool.map(lambda k: self.start(k[0], k[1], dict(k[2]), exes[k[0]]), missing)):
                self.done[key] = ran
        return [self.done[k] for k in keys]

    def runs(self, specs):
        """The validated runs of `specs`, each with --results {out}/results.json; fails the asking test with the
        stderr of any that failed."""
        from suite.schema import ResultsError, load_results

        specs = [(lang, [*argv, "--results", "{out}/results.json"], env) for lang, argv, env in specs]
        for (lang, _, _), ran in zip(specs, self.processes(specs)):
            if ran not in self.read:
                try:
                    if ran.proc.returncode:
                        raise ResultsError(f"exit {ran.proc.returncode}: {ran.proc.stderr.strip()[-2000:]}")
                    doc = load_results(ran.folder / "results.json")
                    self.read[ran] = Run(doc, ran.folder, ran.proc.stderr, ran.seconds)
                except ResultsError as err:
                    self.read[ran] = f"{lang} trainer failed: {err}"
        found = [self.read[ran] for ran in self.processes(specs)]
        failed = [run for run in found if isinstance(run, str)]
        if failed:
            pytest.fail("\n".join(failed), pytrace=False)
        return found


@pytest.fixture(scope="session")
def run_cache(exe_for, tmp_path_factory):
    return RunCache(exe_for, tmp_path_factory)


@pytest.fixture(scope="session")
def trainer_run(run_cache):
    """trainer_run(lang, argv, env=None) -> Run: that trainer run once per session for each (lang, argv, env),
    with --results in a folder of its own ("{out}" in argv names that folder). A failed run fails every test that
    asks for it, with its stderr."""
    return lambda lang, argv, env=None: run_cache.runs([(lang, argv, env)])[0]


@pytest.fixture(scope="session")
def cached_run(trainer_run):
    """cached_run(lang, argv) -> (results, folder, stderr): trainer_run's run as a tuple (its older name)."""
    return lambda lang, argv: tuple(trainer_run(lang, argv))[:3]


@pytest.fixture(scope="session")
def trainer_pair(run_cache):
    """trainer_pair(argv, env=None) -> {lang: Run}: both languages' runs of argv (trainer_run's), side by side."""
    return lambda argv, env=None: dict(zip(LANGUAGES, run_cache.runs([(lang, argv, env) for lang in LANGUAGES])))


@pytest.fixture(scope="session")
def trainer_processes(run_cache):
    """trainer_processes(argv, env=None, langs=LANGUAGES) -> {lang: Ran}: each language's process of argv, whatever
    its exit (bad input: the expected failures), started once per session, side by side."""
    def get(argv, env=None, langs=LANGUAGES):
        return dict(zip(langs, run_cache.processes([(lang, argv, env) for lang in langs])))
    return get


@pytest.fixture(scope="session")
def cross_read(run_cache, tiny_run, tiny_data):
    """cross_read(reader, device="cpu") -> Run: `reader`'s eval-only run (tiny.eval_argv) of the weights the other
    language's canonical run trained; both readers run at once."""
    def get(reader, device="cpu"):
        weights = {lang: tiny_run(lang, device=device).folder / tiny.FILES["trained"][1] for lang in LANGUAGES}
        specs = [(lang, tiny.eval_argv(tiny_data, weights[other], device), None)
                 for lang, other in zip(LANGUAGES, reversed(LANGUAGES))]
        return dict(zip(LANGUAGES, run_cache.runs(specs)))[reader]
    return get


@pytest.fixture(scope="session")
def tiny_run(trainer_pair, tiny_data):
    """tiny_run(lang, mode="default", device="cpu") -> Run: the canonical tiny run of that mode (suite/plugin/tiny.py),
    both languages run once per session."""
    return lambda lang, mode="default", device="cpu": trainer_pair(tiny.argv(tiny_data, mode, device))[lang]
