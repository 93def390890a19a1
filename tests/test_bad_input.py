"""Every row of README's "Bad input" table: what the user sees (one line naming the cause, the exit code)
and what is left behind (never a results file from a failed run, never a partial one).

Trainer rows run both languages with the same flags: the twins fail the same way. The checks compare exit
codes and each message's key fragment (the flag, "must be", "cannot read weights"), not a library's wording.
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
from bench import prepare, vocab
from bench.vocab import LANGUAGES
from suite import harness as H

QUICK = ["--train-limit", "64", "--test-limit", "32", "--batch-size", "32", "--latency-iters", "0",
         "--threads", "1"]


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


def no_results_left(folder):
    return not any(p.name.startswith("out.json") for p in folder.iterdir())


# ---- data --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", LANGUAGES)
def test_missing_data_folder(lang, cpp_exe, tmp_path, one_line_error):
    proc = run(lang, cpp_exe, ["--data", str(tmp_path / "nowhere"), *QUICK])
    one_line_error(proc, lang, 1, "data folder not found", "nowhere")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_missing_data_file(lang, cpp_exe, data_copy, one_line_error):
    (data_copy / "data_batch_3.bin").unlink()
    proc = run(lang, cpp_exe, ["--data", str(data_copy), *QUICK])
    one_line_error(proc, lang, 1, "missing data file", "data_batch_3.bin")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_truncated_data_file(lang, cpp_exe, data_copy, tmp_path, one_line_error):
    path = data_copy / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-100])  # cut inside the last record
    proc = run(lang, cpp_exe, ["--data", str(data_copy), *QUICK, "--results", str(tmp_path / "out.json")])
    one_line_error(proc, lang, 1, "data_batch_2.bin", "not a positive multiple of the 3073-byte record")
    assert no_results_left(tmp_path)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_corrupt_label(lang, cpp_exe, data_copy, one_line_error):
    path = data_copy / "test_batch.bin"
    raw = bytearray(path.read_bytes())
    raw[5 * D.RECORD_BYTES] = 42  # the label byte of record 5
    path.write_bytes(bytes(raw))
    proc = run(lang, cpp_exe, ["--data", str(data_copy), *QUICK])
    one_line_error(proc, lang, 1, "test_batch.bin", "record 5 has label 42 (> 9)")


def test_verify_names_the_bad_file(data_copy):
    path = data_copy / "data_batch_4.bin"
    path.write_bytes(path.read_bytes() + b"\0")
    proc = subprocess.run([sys.executable, "-m", "bench.prepare", "verify", str(data_copy)], cwd=H.ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"bench.prepare: error: {path}: size {path.stat().st_size} is not a positive multiple of the 3073-byte record"]


def test_download_with_wrong_checksum_extracts_nothing(tmp_path):
    """A download whose md5 differs is an error at once (no retry loop) and leaves no data files."""
    fake = tmp_path / "cifar-10-binary.tar.gz"
    member = tmp_path / "data_batch_1.bin"
    member.write_bytes(bytes(D.RECORD_BYTES))
    with tarfile.open(fake, "w:gz") as tar:
        tar.add(member, arcname="cifar-10-batches-bin/data_batch_1.bin")
    target = tmp_path / "cifar"
    proc = subprocess.run([sys.executable, "-m", "bench.prepare", "download", str(target), "--url", fake.as_uri()],
                          cwd=H.ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("bench.prepare: error: ") and f"does not match the expected {prepare.OFFICIAL_MD5}" in line
    assert not any(target.rglob("*.bin")), "nothing may be extracted from an archive with the wrong checksum"


# ---- flags ---------------------------------------------------------------------------------------------------

# (flags, the message's key fragment, whether both languages must write the very same line: they parse with the
# same loop over the one flag table, so every row is the same line; the flag stays for rows a future change may
# word differently on purpose).
BAD_FLAGS = [
    (["--model", "resnet50"], "--model must be one of {resnet18,resnet34}, got 'resnet50'", True),
    (["--epochs", "0"], "--epochs must be an integer in [1, 1000000], got '0'", True),
    (["--batch-size", "0"], "--batch-size must be", True),
    (["--epochs", "two"], "--epochs must be an integer", True),
    (["--epochs", "1_000"], "--epochs must be an integer", True),
    (["--lr", "-0.1"], "--lr must be a number in (0, 1000], got '-0.1'", True),
    (["--lr", "nan"], "--lr must be a number", True),
    (["--lr", "1e999"], "--lr must be a number", True),
    (["--train-limit", "-5"], "--train-limit must be", True),
    (["--seed", str(2**63)], "--seed must be an integer in [0, 9223372036854775807]", True),
    (["--repeat", "0"], "--repeat must be an integer in [1, 1000000], got '0'", True),
    (["--latency-batch-sizes", "1,0"], "--latency-batch-sizes must be comma-separated integers", True),
    (["--latency-batch-sizes", ""], "--latency-batch-sizes must be", True),
    (["--precision", "fp8"], "--precision must be one of {fp32,bf16}", True),
    (["--inference-paths", "eager,tensorrt"], "--inference-paths must be distinct comma-separated names", True),
    (["--inference-paths", "eager,eager"], "--inference-paths must be distinct", True),
    (["--concurrency", "2,x"], "--concurrency must be comma-separated integers", True),
    (["--workers", "257"], "--workers must be", True),
    (["--inference-paths", "eager,aoti"], "--inference-paths aoti needs --aoti-dir", True),
    (["--trace-steps", "2"], "--trace-steps needs --trace-dir DIR (where the Chrome traces go)", True),
    (["--trace-steps", "-1"], "--trace-steps must be an integer in [0, 1000000], got '-1'", True),
    (["--no-such-flag"], "unknown flag '--no-such-flag'", True),
    (["--epochs"], "--epochs needs a value", True),
    (["--eval-only=1"], "--eval-only takes no value", True),
    (["--lr", "-1e3"], "--lr must be a number in (0, 1000], got '-1e3'", True),
    (["--concurrency", "-1,2"], "--concurrency must be comma-separated integers", True),
]


@pytest.mark.parametrize("flags,message,same", BAD_FLAGS, ids=[" ".join(f) or "empty" for f, _, _ in BAD_FLAGS])
def test_bad_flags_are_usage_errors(cpp_exe, tiny_data, flags, message, same, one_line_error):
    """C++ as a process; Python through bench.flags.parse_args in-process (the trainer's CLI calls the same
    function, and a process per case would mostly time `import torch`; the tests below run its CLI)."""
    from bench.flags import UsageError, parse_args

    line = one_line_error(run("cpp", cpp_exe, ["--data", str(tiny_data), *QUICK, *flags]), "cpp", 2, message)
    with pytest.raises(UsageError) as err:
        parse_args(["--data", str(tiny_data), *QUICK, *flags])
    assert message in str(err.value) and "\n" not in str(err.value)
    if same:
        assert line == f"{vocab.PROGRAMS['cpp']}: error: {err.value}", "the twins word this error differently"


@pytest.mark.parametrize("flags,message", [(["--model", "resnet50"], "--model must be"),
                                           (["--epochs", "two"], "--epochs must be")], ids=["model", "epochs"])
def test_bad_flags_through_the_python_cli(tiny_data, flags, message, one_line_error):
    proc = run("python", None, ["--data", str(tiny_data), *QUICK, *flags])
    one_line_error(proc, "python", 2, message)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_threads_beyond_the_limit_is_a_usage_error(lang, cpp_exe, tiny_data, tmp_path, one_line_error):
    """Found by a user: --threads 100000 crashed both trainers (exit 139, no message) inside set_num_threads."""
    out = tmp_path / "out.json"
    proc = run(lang, cpp_exe, ["--data", str(tiny_data), *QUICK, "--threads", "100000", "--results", str(out)])
    one_line_error(proc, lang, 2, "--threads must be an integer in [0, 1024], got '100000'")
    assert no_results_left(tmp_path)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_overflowing_epochs_is_a_usage_error(lang, cpp_exe, tiny_data, tmp_path, one_line_error):
    """Found by a user: Python took an epoch count beyond any int64 and started training."""
    huge = "99999999999999999999999"
    out = tmp_path / "out.json"
    proc = run(lang, cpp_exe, ["--data", str(tiny_data), *QUICK, "--epochs", huge, "--results", str(out)])
    one_line_error(proc, lang, 2, f"--epochs must be an integer in [1, 1000000], got '{huge}'")
    assert "warm-up" not in proc.stderr and "epoch 1/" not in proc.stderr, "training started"
    assert no_results_left(tmp_path)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_cuda_requested_without_gpu(lang, cpp_exe, tiny_data, one_line_error):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the error cannot happen here")
    proc = run(lang, cpp_exe, ["--data", str(tiny_data), *QUICK, "--device", "cuda"])
    one_line_error(proc, lang, 2, "--device cuda was requested but CUDA is not available")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_aoti_without_its_folder_is_a_usage_error(lang, cpp_exe, tiny_data, one_line_error):
    proc = run(lang, cpp_exe, ["--data", str(tiny_data), *QUICK, "--inference-paths", "aoti"])
    one_line_error(proc, lang, 2, "--inference-paths aoti needs --aoti-dir")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_an_unusable_trace_folder_stops_the_run_before_training(lang, cpp_exe, tiny_data, tmp_path, one_line_error):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    results = tmp_path / "r.json"
    proc = run(lang, cpp_exe, ["--data", str(tiny_data), *QUICK, "--trace-steps", "1", "--trace-dir",
                               str(blocker / "traces"), "--results", str(results)])
    one_line_error(proc, lang, 1, f"cannot create --trace-dir {blocker / 'traces'}: Not a directory")
    assert "epoch 1/" not in proc.stderr and not results.exists()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_missing_aoti_package_names_the_file_and_the_command(lang, cpp_exe, tiny_data, tmp_path, one_line_error):
    """Checked before training: the file, and the command that builds it."""
    args = ["--data", str(tiny_data), *QUICK, "--latency-iters", "1", "--latency-batch-sizes", "1,8",
            "--inference-paths", "eager,aoti", "--aoti-dir", str(tmp_path), "--channels-last", "--device", "cpu"]
    proc = run(lang, cpp_exe, args)
    package = tmp_path / vocab.aoti_package_name("resnet18", "fp32", True, 1)
    one_line_error(proc, lang, 1, f"AOTInductor package {package} not found",
                   "python -m suite.experiments.aoti package --model resnet18 --device cpu --precision fp32 "
                   "--channels-last --batch-sizes 1,8")
    assert "epoch 1/" not in proc.stderr, "the run trained before finding the package missing"


# ---- weights -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("content,cause", [(b"definitely not a torch archive", "not a torch archive"),
                                           (b"", "the file is empty")], ids=["foreign", "empty"])
def test_unreadable_weights_file(lang, content, cause, cpp_exe, tiny_data, tmp_path, one_line_error):
    weights = tmp_path / "w.pt"
    weights.write_bytes(content)
    proc = run(lang, cpp_exe, ["--data", str(tiny_data), *QUICK, "--load-weights", str(weights)])
    one_line_error(proc, lang, 1, f"cannot read weights file {weights}: {cause}")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_truncated_weights_file(lang, cpp_exe, tiny_data, tmp_path, one_line_error):
    """Found by a user: half a weights file gave, in Python, the first line of torch's generic weights_only
    notice. Both languages say what is wrong with the file, in one line."""
    from bench import model as M
    from bench import weights as W

    weights = tmp_path / "half.pt"
    W.save_weights(M.make_model("resnet18"), weights)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    proc = run(lang, cpp_exe, ["--data", str(tiny_data), *QUICK, "--load-weights", str(weights)])
    one_line_error(proc, lang, 1, f"cannot read weights file {weights}: truncated")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_weights_of_the_other_model(lang, cpp_exe, tiny_data, tmp_path, one_line_error):
    from bench import model as M
    from bench import weights as W

    weights = tmp_path / "r18.pt"
    W.save_weights(M.make_model("resnet18"), weights)
    proc = run(lang, cpp_exe, ["--data", str(tiny_data), *QUICK, "--model", "resnet34", "--load-weights", str(weights)])
    one_line_error(proc, lang, 1, f"weights file {weights} does not fit resnet34: missing layer1.2.conv1.weight")


# ---- during the run ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", LANGUAGES)
def test_nan_loss_stops_at_once(lang, cpp_exe, tiny_data, tmp_path, one_line_error):
    out = tmp_path / "out.json"
    proc = run(lang, cpp_exe, ["--data", str(tiny_data), *QUICK, "--train-limit", "64", "--batch-size", "16",
                               "--epochs", "2", "--results", str(out)], env={"BENCH_NAN_AT_STEP": "5"})
    # Step 5 is the second step of epoch 2 (4 steps per epoch): the epoch and the step are named.
    one_line_error(proc, lang, 1, "non-finite training loss at epoch 2 step 1 (global step 5)")
    assert "epoch 2/2" not in proc.stderr, "no progress line for the epoch that produced NaN"
    assert no_results_left(tmp_path)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_diverged_weights_stop_the_run(lang, cpp_exe, tiny_data, tmp_path, one_line_error):
    """A finite training loss whose update breaks the weights (the largest LR allowed): the test loss is named."""
    out = tmp_path / "out.json"
    proc = run(lang, cpp_exe, ["--data", str(tiny_data), *QUICK, "--train-limit", "32", "--lr", str(vocab.MAX_LR),
                               "--results", str(out)])
    one_line_error(proc, lang, 1, "non-finite test loss at epoch 1: the weights diverged")
    assert no_results_left(tmp_path)


@pytest.mark.parametrize("lang", LANGUAGES)
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


@pytest.mark.parametrize("lang", LANGUAGES)
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
    assert stderr.strip().splitlines()[-1] == (f"{vocab.PROGRAMS[lang]}: error: interrupted by "
                                               f"{signal.Signals(sig).name}; no results written")
    assert not any(p.name.startswith("out.json") for p in tmp_path.iterdir())


@pytest.mark.parametrize("lang", LANGUAGES)
def test_full_disk_when_writing_results(lang, cpp_exe, tiny_data, tmp_path, one_line_error):
    """A write that fails half-way (here: a 1 KiB file-size limit) names the file and leaves nothing."""
    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    out = tmp_path / "out.json"
    cmd = H.trainer_command(lang, ["--data", str(tiny_data), *QUICK, "--results", str(out)], cpp_exe)
    proc = subprocess.run(cmd, cwd=H.ROOT, env={**os.environ, "PYTHONPATH": str(H.ROOT)}, capture_output=True,
                          text=True, preexec_fn=limit_file_size)
    one_line_error(proc, lang, 1, f"cannot write results to {out}: File too large")
    assert no_results_left(tmp_path)


# ---- the suite -----------------------------------------------------------------------------------------------

def pytest_run(tmp_path, *args, env=None):
    cmd = [sys.executable, "-m", "pytest", str(H.ROOT / "tests" / "test_trainers.py"), "-p", "no:cacheprovider",
           "-p", "no:xdist", *args]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    return proc, proc.stdout + proc.stderr


@pytest.mark.parametrize("args,message", [
    (["--epochs", "0"], "torch-api-bench: --epochs must be an integer in [1, 1000000], got '0'"),
    (["--threads", "5000"], "torch-api-bench: --threads must be an integer in [0, 1024]"),  # the trainers' limit
    (["--lr", "2000"], "torch-api-bench: --lr must be a number in (0, 1000]"),
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


@pytest.mark.parametrize("lang", LANGUAGES)
def test_test_hooks_are_checked_and_zero_turns_them_off(lang, cpp_exe, tiny_data, tmp_path, one_line_error):
    """A malformed hook is a usage error like a bad flag; BENCH_SLEEP_PER_STEP_MS=0 is no sleep, as unset is."""
    args = ["--data", str(tiny_data), *QUICK, "--eval-only", "--results", str(tmp_path / "out.json")]
    bad = run(lang, cpp_exe, args, env={"BENCH_SLEEP_PER_STEP_MS": "fast"})
    one_line_error(bad, lang, 2, "BENCH_SLEEP_PER_STEP_MS must be a number")
    assert no_results_left(tmp_path)
    off = run(lang, cpp_exe, args, env={"BENCH_SLEEP_PER_STEP_MS": "0"})
    assert off.returncode == 0, off.stderr[-2000:]
