"""bench_train stands alone: it never starts Python (or anything else). It runs with no interpreter on PATH and
no PYTHONPATH, and finds the default data folder itself, as the Python trainer does: the official set in the
cache, else the synthetic set with a loud note, else one line naming the command that prepares it."""

import os
import re
import shutil
import subprocess

import pytest

from bench import data as D
from bench.vocab import LANGUAGES
from suite import harness as H
from suite.schema import load_results

QUICK = ["--device", "cpu", "--train-limit", "64", "--test-limit", "32", "--batch-size", "32", "--threads", "1",
         "--latency-iters", "2", "--latency-batch-sizes", "1", "--inference-paths", "eager", "--warmup-steps", "1"]
# A call that starts a program: what bench_train must not contain (comments are left out before the search).
DEFAULT_SYNTHETIC = D.synthetic_dir(D.SYNTHETIC_TRAIN, D.SYNTHETIC_TEST, D.SYNTHETIC_SEED)  # where both look
STARTS_A_PROGRAM = re.compile(r"\b(popen|system|exec[lv]p?e?|posix_spawnp?|fork)\s*\(")


def run_without_python(cpp_exe, args, tmp_path, env=None):
    """bench_train by absolute path, PATH an empty folder (no python to find), PYTHONPATH unset."""
    no_programs = tmp_path / "empty-path"
    no_programs.mkdir(exist_ok=True)
    full_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full_env.update(PATH=str(no_programs), **(env or {}))
    return subprocess.run([str(cpp_exe), *args], cwd=tmp_path, env=full_env, capture_output=True, text=True,
                          timeout=600)


def run(lang, cpp_exe, args, tmp_path, env):
    if lang == "cpp":
        return run_without_python(cpp_exe, args, tmp_path, env)
    return H.run_trainer("python", args, env=env)


def test_runs_with_no_python_anywhere(cpp_exe, tiny_data, tmp_path):
    out = tmp_path / "out.json"
    proc = run_without_python(cpp_exe, ["--data", str(tiny_data), *QUICK, "--results", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = load_results(out)  # validated: complete, every field of the schema
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
    folder.mkdir(parents=True)
    for name in D.TRAIN_FILES + [D.TEST_FILE]:
        shutil.copyfile(source / name, folder / name)
    if synthetic:
        (folder / D.SYNTH_MARKER).write_text("{}\n")
    return folder


@pytest.mark.parametrize("lang", LANGUAGES)
def test_default_data_is_the_synthetic_set_said_loudly(lang, cpp_exe, tiny_data, tmp_path):
    synthetic = copy_data(tiny_data, tmp_path / "cache" / DEFAULT_SYNTHETIC, synthetic=True)
    out = tmp_path / "out.json"
    proc = run(lang, cpp_exe, [*QUICK, "--results", str(out)], tmp_path, {"BENCH_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    notes = [line for line in proc.stderr.splitlines() if ": note: " in line]
    assert len(notes) == 1 and "SYNTHETIC" in notes[0] and str(synthetic) in notes[0], proc.stderr
    assert load_results(out)["dataset"] | {"sha256": None} == {
        "kind": "synthetic", "path": str(synthetic), "sha256": None, "train_records": 64, "test_records": 32}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_default_data_prefers_the_official_folder(lang, cpp_exe, tiny_data, tmp_path):
    cache = tmp_path / "cache"
    official = copy_data(tiny_data, cache / D.OFFICIAL_DIR, synthetic=False)
    copy_data(tiny_data, cache / DEFAULT_SYNTHETIC, synthetic=True)
    out = tmp_path / "out.json"
    proc = run(lang, cpp_exe, [*QUICK, "--results", str(out)], tmp_path, {"BENCH_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ": note: " not in proc.stderr
    assert load_results(out)["dataset"]["path"] == str(official)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_no_prepared_data_names_the_command(lang, cpp_exe, tmp_path, one_line_error):
    out = tmp_path / "out.json"
    proc = run(lang, cpp_exe, [*QUICK, "--results", str(out)], tmp_path, {"BENCH_CACHE": str(tmp_path / "empty")})
    line = one_line_error(proc, lang, 1, "no --data given", str(tmp_path / "empty" / D.OFFICIAL_DIR))
    assert "python -m bench.prepare default" in line and "--data DIR" in line
    assert not out.exists()
