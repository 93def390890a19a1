"""Every row of README's "Bad input" table: what the user sees (one line naming the cause, the exit code)
and what is left behind (never a results file from a failed run, never a partial one).

Trainer rows run both languages with the same flags: the twins fail the same way.
"""

import os
import resource
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from bench import data as D
from suite import harness as H

LANG_PROG = {"python": "bench.train", "cpp": "bench_train"}
QUICK = ["--train-limit", "64", "--test-limit", "32", "--batch-size", "32", "--latency-iters", "0",
         "--threads", "1"]


@pytest.fixture(scope="module")
def tiny_data(cache_dir):
    return H.ensure_synthetic(cache_dir / "synthetic-320-64-7", 320, 64, seed=7)


@pytest.fixture
def data_copy(tiny_data, tmp_path):
    """A private copy of the tiny dataset to damage."""
    folder = tmp_path / "data"
    folder.mkdir()
    for name in D.TRAIN_FILES + [D.TEST_FILE]:
        (folder / name).write_bytes((tiny_data / name).read_bytes())
    return folder


def run(lang, cpp_exe, args, **kw):
    return H.run_trainer(lang, args, cpp_exe if lang == "cpp" else None, **kw)


def assert_one_line_error(proc, lang, code, *fragments):
    """Exit `code` and exactly one stderr line `<prog>: error: ...` containing every fragment."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code, f"exit {proc.returncode}, stderr:\n{proc.stderr[-2000:]}"
    errors = [line for line in lines if line.startswith(f"{LANG_PROG[lang]}: error: ")]
    assert len(errors) == 1, proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def no_results_left(folder):
    return not any(p.name.startswith("out.json") for p in folder.iterdir())


# ---- data --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", H.LANGS)
def test_missing_data_folder(lang, cpp_exe, tmp_path):
    proc = run(lang, cpp_exe, ["--data", str(tmp_path / "nowhere"), *QUICK])
    assert_one_line_error(proc, lang, 1, "data folder not found", "nowhere")


@pytest.mark.parametrize("lang", H.LANGS)
def test_missing_data_file(lang, cpp_exe, data_copy):
    (data_copy / "data_batch_3.bin").unlink()
    proc = run(lang, cpp_exe, ["--data", str(data_copy), *QUICK])
    assert_one_line_error(proc, lang, 1, "missing data file", "data_batch_3.bin")


@pytest.mark.parametrize("lang", H.LANGS)
def test_truncated_data_file(lang, cpp_exe, data_copy, tmp_path):
    path = data_copy / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-100])  # cut inside the last record
    proc = run(lang, cpp_exe, ["--data", str(data_copy), *QUICK, "--results", str(tmp_path / "out.json")])
    assert_one_line_error(proc, lang, 1, "data_batch_2.bin", "not a positive multiple of the 3073-byte record")
    assert no_results_left(tmp_path)


@pytest.mark.parametrize("lang", H.LANGS)
def test_corrupt_label(lang, cpp_exe, data_copy):
    path = data_copy / "test_batch.bin"
    raw = bytearray(path.read_bytes())
    raw[5 * D.RECORD_BYTES] = 42  # the label byte of record 5
    path.write_bytes(bytes(raw))
    proc = run(lang, cpp_exe, ["--data", str(data_copy), *QUICK])
    assert_one_line_error(proc, lang, 1, "test_batch.bin", "record 5 has label 42 (> 9)")


def test_verify_names_the_bad_file(data_copy):
    path = data_copy / "data_batch_4.bin"
    path.write_bytes(path.read_bytes() + b"\0")
    proc = subprocess.run([sys.executable, "-m", "bench.data", "verify", str(data_copy)], cwd=H.ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"bench.data: error: {path}: size {path.stat().st_size} is not a positive multiple of the 3073-byte record"]


def test_download_with_wrong_checksum_extracts_nothing(tmp_path):
    """A download whose md5 differs is an error at once (no retry loop) and leaves no data files."""
    fake = tmp_path / "cifar-10-binary.tar.gz"
    member = tmp_path / "data_batch_1.bin"
    member.write_bytes(bytes(D.RECORD_BYTES))
    with tarfile.open(fake, "w:gz") as tar:
        tar.add(member, arcname="cifar-10-batches-bin/data_batch_1.bin")
    target = tmp_path / "cifar"
    proc = subprocess.run([sys.executable, "-m", "bench.data", "download", str(target), "--url", fake.as_uri()],
                          cwd=H.ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("bench.data: error: ") and f"does not match the expected {D.OFFICIAL_MD5}" in line
    assert not any(target.rglob("*.bin")), "nothing may be extracted from an archive with the wrong checksum"


# ---- flags ---------------------------------------------------------------------------------------------------

BAD_FLAGS = [
    (["--model", "resnet50"], "unknown model 'resnet50' (choose from resnet18, resnet34)"),
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
    (["--lr", "-0.1"], "--lr must be a positive number, got -0.1"),
    (["--train-limit", "-5"], "--train-limit must be >= 0, got -5"),
    (["--latency-batch-sizes", "1,0"], "batch sizes must be >= 1"),
    (["--precision", "fp8"], "unknown precision 'fp8' (choose from fp32, bf16)"),
    (["--inference-paths", "eager,tensorrt"], "unknown inference path 'tensorrt'"),
    (["--concurrency", "2,x"], "expected comma-separated integers"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
]


@pytest.mark.parametrize("flags,message", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_flags_are_usage_errors(cpp_exe, tiny_data, flags, message):
    """C++ as a process; Python through bench.train.parse_args in-process (its CLI path is the same function,
    and a process per case would mostly time `import torch`; test_bad_flags_through_the_python_cli checks it)."""
    from bench import train

    proc = run("cpp", cpp_exe, ["--data", str(tiny_data), *QUICK, *flags])
    assert_one_line_error(proc, "cpp", 2, message)
    with pytest.raises(train.UsageError) as err:
        train.parse_args(["--data", str(tiny_data), *QUICK, *flags])
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("flags,message", [BAD_FLAGS[0], BAD_FLAGS[3]], ids=["model", "epochs"])
def test_bad_flags_through_the_python_cli(tiny_data, flags, message):
    proc = run("python", None, ["--data", str(tiny_data), *QUICK, *flags])
    assert_one_line_error(proc, "python", 2, message)


@pytest.mark.parametrize("lang", H.LANGS)
def test_cuda_requested_without_gpu(lang, cpp_exe, tiny_data):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the error cannot happen here")
    proc = run(lang, cpp_exe, ["--data", str(tiny_data), *QUICK, "--device", "cuda"])
    assert_one_line_error(proc, lang, 2, "--device cuda was requested but CUDA is not available")


# ---- weights -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", H.LANGS)
def test_unreadable_weights_file(lang, cpp_exe, tiny_data, tmp_path):
    garbage = tmp_path / "w.pt"
    garbage.write_bytes(b"definitely not a torch archive")
    proc = run(lang, cpp_exe, ["--data", str(tiny_data), *QUICK, "--load-weights", str(garbage)])
    assert_one_line_error(proc, lang, 1, f"cannot read weights file {garbage}")


@pytest.mark.parametrize("lang", H.LANGS)
def test_weights_of_the_other_model(lang, cpp_exe, tiny_data, tmp_path):
    from bench import model as M

    weights = tmp_path / "r18.pt"
    M.save_weights(M.make_model("resnet18"), weights)
    proc = run(lang, cpp_exe, ["--data", str(tiny_data), *QUICK, "--model", "resnet34", "--load-weights", str(weights)])
    assert_one_line_error(proc, lang, 1, f"weights file {weights} does not fit resnet34")


# ---- during the run ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", H.LANGS)
def test_nan_loss_stops_at_once(lang, cpp_exe, tiny_data, tmp_path):
    out = tmp_path / "out.json"
    proc = run(lang, cpp_exe, ["--data", str(tiny_data), *QUICK, "--train-limit", "64", "--batch-size", "16",
                               "--epochs", "2", "--results", str(out)], env={"BENCH_NAN_AT_STEP": "5"})
    # Step 5 is the second step of epoch 2 (4 steps per epoch): the epoch and the step are named.
    assert_one_line_error(proc, lang, 1, "non-finite training loss (nan) at epoch 2 step 1 (global step 5)")
    assert "epoch 2/2" not in proc.stderr, "no progress line for the epoch that produced NaN"
    assert no_results_left(tmp_path)


@pytest.mark.parametrize("lang", H.LANGS)
def test_diverged_weights_stop_the_run(lang, cpp_exe, tiny_data, tmp_path):
    """A finite training loss whose update breaks the weights (an absurd LR): the test loss is named."""
    out = tmp_path / "out.json"
    proc = run(lang, cpp_exe, ["--data", str(tiny_data), *QUICK, "--train-limit", "32", "--lr", "1e30",
                               "--results", str(out)])
    assert_one_line_error(proc, lang, 1, "non-finite test loss (nan) at epoch 1: the weights diverged")
    assert no_results_left(tmp_path)


@pytest.mark.parametrize("lang", H.LANGS)
def test_trainer_crash_leaves_no_results(lang, cpp_exe, tiny_data, tmp_path):
    proc = run(lang, cpp_exe, ["--data", str(tiny_data), *QUICK, "--results", str(tmp_path / "out.json")],
               env={"BENCH_CRASH_AT_STEP": "1"})
    assert proc.returncode == -signal.SIGABRT
    assert no_results_left(tmp_path)


def test_trainer_crash_fails_the_suite_and_saves_no_baseline(tmp_path, cpp_exe):
    """What a suite user sees: the test names the trainer and its exit; no benchmark data is saved."""
    cmd = [sys.executable, "-m", "pytest", str(H.ROOT / "tests" / "test_benchmarks.py"), "-p", "no:cacheprovider",
           "-p", "no:xdist", "-k", "epoch_time", "--langs", "python", "--models", "resnet18", *QUICK,
           "--build-dir", str(cpp_exe.parent), "--benchmark-storage=file://./storage", "--benchmark-autosave"]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "BENCH_CRASH_AT_STEP": "0"}, capture_output=True,
                          text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert f"python trainer failed (exit {-signal.SIGABRT})" in out
    assert "not saving benchmark data" in out
    assert not list(tmp_path.rglob("*.json")), "a failed session must not leave a baseline"


@pytest.mark.parametrize("lang", H.LANGS)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_mid_epoch_leaves_no_results(lang, sig, cpp_exe, tiny_data, tmp_path):
    started = tmp_path / "first-batch.pt"  # written at the first step: training is under way
    out = tmp_path / "out.json"
    cmd = H.trainer_command(lang, ["--data", str(tiny_data), *QUICK, "--train-limit", "256", "--results", str(out),
                                   "--dump-batch", str(started)], cpp_exe)
    env = {**os.environ, "PYTHONPATH": str(H.ROOT), "BENCH_SLEEP_PER_STEP_MS": "400"}
    with subprocess.Popen(cmd, cwd=H.ROOT, env=env, stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.monotonic() + 120
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), "the trainer never reached its first step"
        proc.send_signal(sig)
        stderr = proc.stderr.read()
        code = proc.wait(timeout=60)
    assert code == 128 + sig
    assert stderr.strip().splitlines()[-1] == (f"{LANG_PROG[lang]}: error: interrupted by {signal.Signals(sig).name}; "
                                               "no results written")
    assert not any(p.name.startswith("out.json") for p in tmp_path.iterdir())


@pytest.mark.parametrize("lang", H.LANGS)
def test_full_disk_when_writing_results(lang, cpp_exe, tiny_data, tmp_path):
    """A write that fails half-way (here: a 1 KiB file-size limit) names the file and leaves nothing."""
    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    out = tmp_path / "out.json"
    cmd = H.trainer_command(lang, ["--data", str(tiny_data), *QUICK, "--results", str(out)], cpp_exe)
    proc = subprocess.run(cmd, cwd=H.ROOT, env={**os.environ, "PYTHONPATH": str(H.ROOT)}, capture_output=True,
                          text=True, preexec_fn=limit_file_size)
    assert_one_line_error(proc, lang, 1, f"cannot write results to {out}: File too large")
    assert no_results_left(tmp_path)


# ---- the suite -----------------------------------------------------------------------------------------------

def pytest_run(tmp_path, *args, env=None):
    cmd = [sys.executable, "-m", "pytest", str(H.ROOT / "tests" / "test_trainers.py"), "-p", "no:cacheprovider",
           "-p", "no:xdist", *args]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    return proc, proc.stdout + proc.stderr


@pytest.mark.parametrize("args,message", [
    (["--epochs", "0"], "torch-api-bench: --epochs must be >= 1, got 0"),
    (["--models", "resnet50"], "torch-api-bench: --models: unknown"),
    (["--modes", "turbo"], "torch-api-bench: --modes: unknown"),
    (["--data", "/no/such/folder"], "torch-api-bench: --data folder not found: /no/such/folder"),
])
def test_suite_usage_errors_before_any_training(tmp_path, args, message):
    proc, out = pytest_run(tmp_path, *args)
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR
    assert message in out


def test_suite_cuda_requested_without_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc, out = pytest_run(tmp_path, "--device", "cuda")
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR
    assert "--device cuda was requested but CUDA is not available on this machine" in out


def test_failed_build_fails_every_cpp_test_with_the_build_output(tmp_path):
    """A broken toolchain: each C++ test fails (not skips) and shows the tail of CMake's output."""
    proc, out = pytest_run(tmp_path, "--langs", "cpp", "--models", "resnet18", "--build-dir", str(tmp_path / "b"),
                           env={"CXX": str(tmp_path / "no-such-compiler")})
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED
    assert "C++ build failed (cmake -S exit 1)" in out
    assert "no-such-compiler" in out, "the tail of the CMake output names the cause"
    summary = out.strip().splitlines()[-1]
    assert "failed" in summary and "passed" not in summary, summary


def test_missing_cmake_is_a_clear_build_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    with pytest.raises(H.BuildError, match="cmake not found on PATH: install CMake >= 3.18"):
        H.build_cpp(tmp_path / "b")
