"""Every row of docs/bad-input.md's table: what the user sees (one line naming the cause, the exit code)
and what is left behind (never a results file from a failed run, never a partial one).

Trainer rows run both languages with the same flags, side by side (the session's run cache, trainer_processes:
each failing run starts once): the twins fail the same way. The checks compare exit codes and each message's key
fragment (the flag, "must be", "cannot read weights"), not a library's wording. The inputs a row damages are
made once per module, so that both languages' runs of a row share one command line.
"""

import resource
import signal
import subprocess
import tarfile
import time

import pytest

from bench import data as D
from bench import prepare, vocab
from bench.vocab import LANGUAGES
from suite import harness as H
from suite.plugin import tiny

QUICK = [*tiny.sizes(train=32, test=16, epochs=1), *tiny.NO_LATENCY, "--threads", "1", "--warmup-steps", "0"]
RESULTS = ["--results", "{out}/out.json"]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A folder for this module's inputs (damaged copies, weights files, blockers)."""
    return tmp_path_factory.mktemp("bad-input")


def data_copy(tiny_data, folder, damage=None):
    """A copy of the tiny dataset in `folder`, then damage(folder) (once: the folder is the module's)."""
    if not folder.exists():
        folder.mkdir()
        for name in D.TRAIN_FILES + [D.TEST_FILE]:
            (folder / name).write_bytes((tiny_data / name).read_bytes())
        if damage:
            damage(folder)
    return folder


def no_results_left(folder):
    return not any(p.name.startswith("out.json") for p in folder.iterdir())


# ---- data --------------------------------------------------------------------------------------------------

def truncate_batch_2(folder):
    path = folder / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-100])  # cut inside the last record


def corrupt_label(folder):
    path = folder / "test_batch.bin"
    raw = bytearray(path.read_bytes())
    raw[5 * D.RECORD_BYTES] = 42  # the label byte of record 5
    path.write_bytes(bytes(raw))


DATA_ROWS = {
    "missing folder": (None, ["data folder not found", "nowhere"]),
    "missing file": (lambda f: (f / "data_batch_3.bin").unlink(), ["missing data file", "data_batch_3.bin"]),
    "truncated file": (truncate_batch_2, ["data_batch_2.bin", "not a positive multiple of the 3073-byte record"]),
    "corrupt label": (corrupt_label, ["test_batch.bin", "record 5 has label 42 (> 9)"]),
}


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("row", DATA_ROWS)
def test_bad_data(trainer_processes, tiny_data, scratch, one_line_error, row, lang):
    damage, fragments = DATA_ROWS[row]
    folder = scratch / "nowhere" if damage is None else data_copy(tiny_data, scratch / row.replace(" ", "-"), damage)
    ran = trainer_processes(["--data", str(folder), *QUICK, *RESULTS])[lang]
    one_line_error(ran.proc, lang, 1, *fragments)
    assert no_results_left(ran.folder)


def test_verify_names_the_bad_file(tiny_data, scratch, capsys):
    """`python -m bench.prepare verify` (its main, in this process)."""
    folder = data_copy(tiny_data, scratch / "long-batch-4")
    path = folder / "data_batch_4.bin"
    path.write_bytes(path.read_bytes() + b"\0")
    assert prepare.main(["verify", str(folder)]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"bench.prepare: error: {path}: size {path.stat().st_size} is not a positive multiple of the 3073-byte "
        "record"]


def test_download_with_wrong_checksum_extracts_nothing(tmp_path, capsys):
    """A download whose md5 differs is an error at once (no retry loop) and leaves no data files
    (`python -m bench.prepare download`, its main in this process)."""
    fake = tmp_path / "cifar-10-binary.tar.gz"
    member = tmp_path / "data_batch_1.bin"
    member.write_bytes(bytes(D.RECORD_BYTES))
    with tarfile.open(fake, "w:gz") as tar:
        tar.add(member, arcname="cifar-10-batches-bin/data_batch_1.bin")
    target = tmp_path / "cifar"
    assert prepare.main(["download", str(target), "--url", fake.as_uri()]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
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


@pytest.fixture(scope="module")
def cpp_bad_flags(run_cache, tiny_data):
    """{flags: the C++ trainer's process} for every BAD_FLAGS row, started together (two at a time)."""
    argvs = [["--data", str(tiny_data), *QUICK, *flags] for flags, _, _ in BAD_FLAGS]
    ran = run_cache.processes([("cpp", argv, None) for argv in argvs])
    return {tuple(flags): r.proc for (flags, _, _), r in zip(BAD_FLAGS, ran)}


@pytest.mark.parametrize("flags,message,same", BAD_FLAGS, ids=[" ".join(f) or "empty" for f, _, _ in BAD_FLAGS])
def test_bad_flags_are_usage_errors(cpp_bad_flags, tiny_data, flags, message, same, one_line_error):
    """C++ as a process; Python through bench.flags.parse_args in-process (the trainer's CLI calls the same
    function, and a process per case would mostly time `import torch`; the tests below run its CLI)."""
    from bench.flags import UsageError, parse_args

    line = one_line_error(cpp_bad_flags[tuple(flags)], "cpp", 2, message)
    with pytest.raises(UsageError) as err:
        parse_args(["--data", str(tiny_data), *QUICK, *flags])
    assert message in str(err.value) and "\n" not in str(err.value)
    if same:
        assert line == f"{vocab.PROGRAMS['cpp']}: error: {err.value}", "the twins word this error differently"


PYTHON_CLI_ROWS = {"model": (["--model", "resnet50"], "--model must be"),
                   "epochs": (["--epochs", "two"], "--epochs must be")}


@pytest.mark.parametrize("row", PYTHON_CLI_ROWS)
def test_bad_flags_through_the_python_cli(run_cache, tiny_data, row, one_line_error):
    specs = [("python", ["--data", str(tiny_data), *QUICK, *flags], None) for flags, _ in PYTHON_CLI_ROWS.values()]
    ran = dict(zip(PYTHON_CLI_ROWS, run_cache.processes(specs)))  # both rows' processes at once
    one_line_error(ran[row].proc, "python", 2, PYTHON_CLI_ROWS[row][1])


@pytest.fixture
def usage_run(trainer_processes, monkeypatch, capsys, tmp_path):
    """usage_run(lang, args, env=None) -> (process, its folder): a run that must stop at a usage error. C++ as a
    process (the session's run cache); Python through bench.train.main in this process: a usage error stops it
    before any torch work, and a process per row would mostly time `import torch` (the Python CLI as a process:
    test_bad_flags_through_the_python_cli and every row that exits 1). main's signal handlers are not installed
    here: pytest's stay."""
    def run(lang, args, env=None):
        if lang == "cpp":
            ran = trainer_processes(args, env, langs=("cpp",))["cpp"]
            return ran.proc, ran.folder
        from bench import train

        monkeypatch.setattr(train.signal, "signal", lambda *a: None)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        argv = [a.replace("{out}", str(tmp_path)) for a in args]
        capsys.readouterr()
        code = train.main(argv)
        return subprocess.CompletedProcess(argv, code, "", capsys.readouterr().err), tmp_path
    return run


USAGE_ERRORS = {
    # Found by a user: --threads 100000 crashed both trainers (exit 139, no message) inside set_num_threads.
    "threads beyond the limit": (["--threads", "100000"], "--threads must be an integer in [0, 1024], got '100000'"),
    # Found by a user: Python took an epoch count beyond any int64 and started training.
    "overflowing epochs": (["--epochs", "99999999999999999999999"],
                           "--epochs must be an integer in [1, 1000000], got '99999999999999999999999'"),
    "aoti without its folder": (["--inference-paths", "aoti"], "--inference-paths aoti needs --aoti-dir"),
}


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("row", USAGE_ERRORS)
def test_usage_errors(usage_run, tiny_data, one_line_error, row, lang):
    extra, message = USAGE_ERRORS[row]
    proc, folder = usage_run(lang, ["--data", str(tiny_data), *QUICK, *extra, *RESULTS])
    one_line_error(proc, lang, 2, message)
    assert "warm-up" not in proc.stderr and "epoch 1/" not in proc.stderr, "training started"
    assert no_results_left(folder)


# (extra flags, the message's key fragments, whether training must not have started); "{scratch}" is the
# module's folder.
RUN_ERRORS = {
    "unusable trace folder": (["--trace-steps", "1", "--trace-dir", "{scratch}/a-file/traces"],
                              ["cannot create --trace-dir {scratch}/a-file/traces: Not a directory"], True),
    # Checked before training: the file, and the command that builds it.
    "missing aoti package": (["--latency-iters", "1", "--latency-batch-sizes", "1,8", "--inference-paths", "eager,aoti",
                              "--aoti-dir", "{scratch}", "--channels-last", "--device", "cpu"],
                             ["AOTInductor package {scratch}/" + vocab.aoti_package_name("resnet18", "fp32", True, 1)
                              + " not found", "python -m suite.experiments.aoti package --model resnet18 --device cpu "
                              "--precision fp32 --channels-last --batch-sizes 1,8"], True),
    # A finite training loss whose update breaks the weights (the largest LR allowed): the test loss is named.
    "diverged weights": (["--lr", str(vocab.MAX_LR)], ["non-finite test loss at epoch 1: the weights diverged"], False),
}


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("row", RUN_ERRORS)
def test_run_errors(trainer_processes, tiny_data, scratch, one_line_error, row, lang):
    extra, fragments, before_training = RUN_ERRORS[row]
    (scratch / "a-file").write_text("not a folder")
    fill = lambda text: text.replace("{scratch}", str(scratch))  # noqa: E731
    ran = trainer_processes(["--data", str(tiny_data), *QUICK, *map(fill, extra), *RESULTS])[lang]
    one_line_error(ran.proc, lang, 1, *map(fill, fragments))
    if before_training:
        assert "warm-up" not in ran.proc.stderr and "epoch 1/" not in ran.proc.stderr, "training started"
    assert no_results_left(ran.folder)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_cuda_requested_without_gpu(usage_run, tiny_data, one_line_error, lang):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the error cannot happen here")
    proc, _ = usage_run(lang, ["--data", str(tiny_data), *QUICK, "--device", "cuda"])
    one_line_error(proc, lang, 2, "--device cuda was requested but CUDA is not available")


# ---- weights -------------------------------------------------------------------------------------------------

def write_weights(path, model="resnet18", keep=1.0):
    from bench import model as M
    from bench import weights as W

    W.save_weights(M.make_model(model), path)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


WEIGHTS_ROWS = {
    "foreign": (lambda p: p.write_bytes(b"definitely not a torch archive"), [], "cannot read weights file {w}: not a "
                "torch archive"),
    "empty": (lambda p: p.write_bytes(b""), [], "cannot read weights file {w}: the file is empty"),
    # Found by a user: half a weights file gave, in Python, the first line of torch's generic weights_only notice.
    # Both languages say what is wrong with the file, in one line.
    "truncated": (lambda p: write_weights(p, keep=0.5), [], "cannot read weights file {w}: truncated"),
    "of the other model": (write_weights, ["--model", "resnet34"],
                           "weights file {w} does not fit resnet34: missing layer1.2.conv1.weight"),
}


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("row", WEIGHTS_ROWS)
def test_unusable_weights_file(trainer_processes, tiny_data, scratch, one_line_error, row, lang):
    write, extra, message = WEIGHTS_ROWS[row]
    weights = scratch / f"{row.replace(' ', '-')}.pt"
    if not weights.exists():
        write(weights)
    ran = trainer_processes(["--data", str(tiny_data), *QUICK, *extra, "--load-weights", str(weights)])[lang]
    one_line_error(ran.proc, lang, 1, message.format(w=weights))


# ---- during the run ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", LANGUAGES)
def test_nan_loss_stops_at_once(trainer_processes, tiny_data, one_line_error, lang):
    args = ["--data", str(tiny_data), *QUICK, "--batch-size", "8", "--epochs", "2", *RESULTS]
    ran = trainer_processes(args, env={"BENCH_NAN_AT_STEP": "5"})[lang]
    # Step 5 is the second step of epoch 2 (32 images in batches of 8: 4 steps per epoch): the epoch and the step
    # are named.
    one_line_error(ran.proc, lang, 1, "non-finite training loss at epoch 2 step 1 (global step 5)")
    assert "epoch 2/2" not in ran.proc.stderr, "no progress line for the epoch that produced NaN"
    assert no_results_left(ran.folder)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_trainer_crash_leaves_no_results(trainer_processes, tiny_data, lang):
    ran = trainer_processes(["--data", str(tiny_data), *QUICK, *RESULTS], env={"BENCH_CRASH_AT_STEP": "1"})[lang]
    assert ran.proc.returncode == -signal.SIGABRT
    assert no_results_left(ran.folder)


def test_trainer_crash_fails_the_suite_and_saves_no_baseline(suite_session, monkeypatch, pytester):
    """What a suite user sees: the test names the trainer and its exit; no benchmark data is saved."""
    monkeypatch.setenv("BENCH_CRASH_AT_STEP", "0")
    before = H.TRAINER_STARTS.copy()
    result, out = suite_session("test_benchmarks.py", "-k", "epoch_time", "--langs", "python", "--models", "resnet18",
                                "--train-limit", "32", "--test-limit", "16", "--batch-size", "32", "--warmup-steps",
                                "0", "--benchmark-storage=file://./storage", "--benchmark-autosave")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out[-3000:]
    assert f"python trainer failed (exit {-signal.SIGABRT})" in out
    assert "not saving benchmark data" in out
    # The session counts the trainer it started, and so does this one, which ran it in-process.
    assert "torch-api-bench: 1 trainer processes started (python 1, cpp 0)" in out
    assert H.TRAINER_STARTS - before == {"python": 1}
    assert not list(pytester.path.rglob("*.json")), "a failed session must not leave a baseline"


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_mid_epoch_leaves_no_results(lang, sig, cpp_exe, tiny_data, tmp_path):
    """A process of its own: the test signals it mid-epoch. The sleep hook keeps the epoch going (on any machine)
    until the signal arrives; the test waits for the first step's batch file, not for a time."""
    started = tmp_path / "first-batch.pt"  # written at the first step: training is under way
    out = tmp_path / "out.json"
    args = ["--data", str(tiny_data), *QUICK, "--train-limit", "256", "--results", str(out), "--dump-batch",
            str(started)]
    with H.start_trainer(lang, args, cpp_exe, env={"BENCH_SLEEP_PER_STEP_MS": "400"}, stderr=subprocess.PIPE) as proc:
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
    """A write that fails half-way (here: a 1 KiB file-size limit) names the file and leaves nothing. A process of
    its own: its file-size limit."""
    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    out = tmp_path / "out.json"
    proc = H.run_trainer(lang, ["--data", str(tiny_data), *QUICK, "--results", str(out)], cpp_exe,
                         preexec_fn=limit_file_size)
    one_line_error(proc, lang, 1, f"cannot write results to {out}: File too large")
    assert no_results_left(tmp_path)


# ---- the suite -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["--epochs", "0"], "torch-api-bench: --epochs must be an integer in [1, 1000000], got '0'"),
    (["--threads", "5000"], "torch-api-bench: --threads must be an integer in [0, 1024]"),  # the trainers' limit
    (["--lr", "2000"], "torch-api-bench: --lr must be a number in (0, 1000]"),
    (["--models", "resnet50"], "torch-api-bench: --models: unknown"),
    (["--modes", "turbo"], "torch-api-bench: --modes: unknown"),
    (["--data", "/no/such/folder"], "torch-api-bench: --data folder not found: /no/such/folder"),
])
def test_suite_usage_errors_before_any_training(suite_session, args, message):
    result, out = suite_session("test_trainers.py", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in out


def test_suite_cuda_requested_without_gpu(suite_session):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result, out = suite_session("test_trainers.py", "--device", "cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--device cuda was requested but CUDA is not available on this machine" in out


def test_failed_build_fails_every_cpp_test_with_the_build_output(suite_session, monkeypatch, pytester):
    """A broken toolchain: each C++ test fails (not skips) and shows the tail of CMake's output."""
    monkeypatch.setenv("CXX", str(pytester.path / "no-such-compiler"))
    result, out = suite_session("test_trainers.py", "--langs", "cpp", "--models", "resnet18", "--build-dir",
                                str(pytester.path / "b"))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "C++ build failed (cmake -S exit 1)" in out
    assert "no-such-compiler" in out, "the tail of the CMake output names the cause"
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) > 0 and "passed" not in outcomes, outcomes


def test_missing_cmake_is_a_clear_build_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    with pytest.raises(H.BuildError, match="cmake not found on PATH: install CMake >= 3.18"):
        H.build_cpp(tmp_path / "b")


HOOK_ROWS = {"BENCH_SLEEP_PER_STEP_MS": "fast", "BENCH_ADD_MS_PER_STEP": "-5"}


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("hook", HOOK_ROWS)
def test_a_malformed_test_hook_is_a_usage_error(usage_run, tiny_data, one_line_error, hook, lang):
    proc, folder = usage_run(lang, ["--data", str(tiny_data), *QUICK, "--eval-only", *RESULTS],
                             env={hook: HOOK_ROWS[hook]})
    one_line_error(proc, lang, 2, f"{hook} must be a number")
    assert no_results_left(folder)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_zero_turns_the_time_hooks_off(trainer_pair, tiny_data, lang):
    """BENCH_SLEEP_PER_STEP_MS=0 and BENCH_ADD_MS_PER_STEP=0 are no sleep and no added time, as unset is (a time's
    own limit excludes 0); the run says they were set."""
    zero = {"BENCH_SLEEP_PER_STEP_MS": "0", "BENCH_ADD_MS_PER_STEP": "0"}
    run = trainer_pair(["--data", str(tiny_data), *QUICK, "--eval-only"], env=zero)[lang]  # exit 0, results valid
    assert run.doc["process"]["test_hooks"] == zero
