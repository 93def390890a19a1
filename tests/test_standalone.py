"""bench_train stands alone: it never starts Python (or anything else). It runs with no interpreter on PATH and
no PYTHONPATH, and finds the default data folder itself, as the Python trainer does: the official set in the
cache, else the synthetic set with a loud note, else one line naming the command that prepares it."""

import re
import shutil

import pytest

from bench import data as D
from bench.vocab import LANGUAGES
from suite import harness as H
from suite.plugin import tiny

QUICK = [*tiny.sizes(train=32, test=16, epochs=1), "--device", "cpu", "--threads", "1", "--latency-iters", "2",
         "--latency-batch-sizes", "1", "--inference-paths", "eager", "--warmup-steps", "1"]
DEFAULT_SYNTHETIC = D.synthetic_dir(D.SYNTHETIC_TRAIN, D.SYNTHETIC_TEST, D.SYNTHETIC_SEED)  # where both look
# A call that starts a program: what bench_train must not contain (comments are left out before the search).
STARTS_A_PROGRAM = re.compile(r"\b(popen|system|exec[lv]p?e?|posix_spawnp?|fork)\s*\(")


@pytest.fixture(scope="module")
def no_programs(tmp_path_factory):
    """An empty folder, for PATH: no python to find."""
    return tmp_path_factory.mktemp("empty-path")


def standalone_env(lang, no_programs, env=None):
    """bench_train's environment here: PATH an empty folder (no python to find), PYTHONPATH unset; Python's as
    the suite runs it. Each run starts in a folder of its own (the run cache's), not in the checkout."""
    cpp = {"PATH": str(no_programs), "PYTHONPATH": None} if lang == "cpp" else {}
    return {**cpp, **(env or {})}


def test_runs_with_no_python_anywhere(trainer_run, tiny_data, no_programs):
    run = trainer_run("cpp", ["--data", str(tiny_data), *QUICK], env=standalone_env("cpp", no_programs))
    doc = run.doc  # validated: complete, every field of the schema
    assert doc["complete"] and doc["language"] == "cpp" and len(doc["epochs"]) == 1
    assert [lat["path"] for lat in doc["latency"]] == ["eager"]


def test_sources_start_no_program():
    """No popen/system/exec/spawn in cpp/, no interpreter or source path compiled in."""
    for path in sorted((H.ROOT / "cpp").glob("*.[ch]*")):
        code = "\n".join(line.split("//")[0] for line in path.read_text().splitlines())
        assert not STARTS_A_PROGRAM.search(code), f"{path.name} starts a program: {STARTS_A_PROGRAM.search(code)[0]}"
        for name in ("BENCH_PYTHON", "BENCH_SOURCE_DIR", "PYTHONPATH", "python3"):
            assert name not in code, f"{path.name} mentions {name}"
    cmake = (H.ROOT / "CMakeLists.txt").read_text()
    assert "BENCH_PYTHON" not in cmake and "BENCH_SOURCE_DIR" not in cmake


def copy_data(source, folder, synthetic):
    if not folder.exists():
        folder.mkdir(parents=True)
        for name in D.TRAIN_FILES + [D.TEST_FILE]:
            shutil.copyfile(source / name, folder / name)
        if synthetic:
            (folder / D.SYNTH_MARKER).write_text("{}\n")
    return folder


@pytest.fixture(scope="module")
def caches(tiny_data, tmp_path_factory):
    """Data caches (BENCH_CACHE): only the synthetic set; the official and the synthetic set; nothing."""
    root = tmp_path_factory.mktemp("caches")
    copy_data(tiny_data, root / "synthetic" / DEFAULT_SYNTHETIC, synthetic=True)
    copy_data(tiny_data, root / "both" / D.OFFICIAL_DIR, synthetic=False)
    copy_data(tiny_data, root / "both" / DEFAULT_SYNTHETIC, synthetic=True)
    return {"synthetic": root / "synthetic", "both": root / "both", "empty": root / "empty"}


def default_data_runs(run_cache, no_programs, cache):
    """Both languages without --data, with this data cache, side by side (eval-only: which data, not training)."""
    return dict(zip(LANGUAGES, run_cache.processes([
        (lang, [*QUICK, "--eval-only", "--results", "{out}/out.json"],
         standalone_env(lang, no_programs, {"BENCH_CACHE": str(cache)})) for lang in LANGUAGES])))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_default_data_is_the_synthetic_set_said_loudly(run_cache, no_programs, caches, lang):
    from suite.schema import load_results

    ran = default_data_runs(run_cache, no_programs, caches["synthetic"])[lang]
    synthetic = caches["synthetic"] / DEFAULT_SYNTHETIC
    assert ran.proc.returncode == 0, ran.proc.stderr[-2000:]
    notes = [line for line in ran.proc.stderr.splitlines() if ": note: " in line]
    assert len(notes) == 1 and "SYNTHETIC" in notes[0] and str(synthetic) in notes[0], ran.proc.stderr
    assert load_results(ran.folder / "out.json")["dataset"] | {"sha256": None} == {
        "kind": "synthetic", "path": str(synthetic), "sha256": None, "train_records": 32, "test_records": 16}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_default_data_prefers_the_official_folder(run_cache, no_programs, caches, lang):
    from suite.schema import load_results

    ran = default_data_runs(run_cache, no_programs, caches["both"])[lang]
    assert ran.proc.returncode == 0, ran.proc.stderr[-2000:]
    assert ": note: " not in ran.proc.stderr
    assert load_results(ran.folder / "out.json")["dataset"]["path"] == str(caches["both"] / D.OFFICIAL_DIR)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_no_prepared_data_names_the_command(run_cache, no_programs, caches, one_line_error, lang):
    ran = default_data_runs(run_cache, no_programs, caches["empty"])[lang]
    line = one_line_error(ran.proc, lang, 1, "no --data given", str(caches["empty"] / D.OFFICIAL_DIR))
    assert "python -m bench.prepare default" in line and "--data DIR" in line
    assert not (ran.folder / "out.json").exists()
