"""Data-parallel training under torchrun (docs/distributed.md): both trainers, 2 ranks on CPU with gloo, tiny data.

Default tier: the proof that 2-rank Python DistributedDataParallel and 2-rank C++ c10d::Reducer compute the same thing
(per-step losses of every rank and the final weights of every rank, bit for bit) and that both are the exact
single-process emulation of 2-rank training (suite/dist.py: so the sharding and the averaging are proven too); a
crashed and a hung rank end the job in one line naming it; the launcher's environment is checked. Thorough: the proof
with --optimizer-impl foreach and bf16, the flat ablation, --no-sync-blocks, two node groups, the other language's
failure cases, and a C++ build without gloo.
"""

import os
import socket
import subprocess
import sys
import time

import pytest
import torch

from bench.vocab import FLAGS, LANGUAGES, PROGRAMS
from suite import dist as D
from suite import harness as H
from suite.schema import load_results

# 18 records, 4 per rank: global batches of 8, 8 and 2 (1 row each: the partial batch); one warm-up step (DDP's first
# iteration and its bucket rebuild happen there); one thread per rank (the emulation's bits). --dist-timeout off its
# default, so that the lockstep test finds it where the flag table says (FAST_FAIL, given later, overrides it).
TINY = ["--device", "cpu", "--model", "resnet18", "--train-limit", "18", "--test-limit", "8", "--batch-size", "4",
        "--epochs", "1", "--lr", "0.02", "--seed", "3", "--threads", "1", "--latency-iters", "0", "--warmup-steps", "1",
        "--record-step-losses", "--dist-timeout", "120"]
EMULATED = {"seed": 3, "batch_size": 4, "world_size": 2, "epochs": 1, "lr": 0.02, "train_limit": 18}
FAST_FAIL = ["--dist-timeout", "3"]  # a hung rank is named after 3 s without an answer


@pytest.fixture(scope="session")
def dist_exe(exe_for):
    """dist_exe(lang): the trainer's executable (None for Python); a C++ build without gloo skips its C++ tests, saying
    why (the build's own reason)."""
    def get(lang):
        exe = exe_for(lang)
        if lang == "cpp":
            why = D.cpp_unavailable(exe)
            if why:
                pytest.skip(f"C++ {D.GLOO_FEATURE} unavailable: {why}")
        return exe
    return get


@pytest.fixture(scope="session")
def job_run(dist_exe, tmp_path_factory):
    """job_run(lang, args, nproc=2): one torchrun job per session for each (lang, args, nproc), "{out}" in args naming
    its folder; returns (rank 0's validated results, the folder). A failed job fails every test that asks for it."""
    done = {}

    def run(lang, args, nproc):
        out = tmp_path_factory.mktemp(f"job-{lang}")
        proc = D.run_job(lang, [a.replace("{out}", str(out)) for a in args] + ["--results", str(out / "results.json")],
                         dist_exe(lang), nproc)
        if proc.returncode:
            return f"{lang} job failed (exit {proc.returncode}): {proc.stderr.strip()[-3000:]}"
        return load_results(out / "results.json"), out

    def get(lang, args, nproc=2):
        key = (lang, tuple(args), nproc)
        if key not in done:
            done[key] = run(lang, args, nproc)
        if isinstance(done[key], str):
            pytest.fail(done[key], pytrace=False)
        return done[key]
    return get


def weights(folder, rank):
    return torch.load(folder / ("w.pt" if rank == 0 else f"w.pt.rank{rank}"), weights_only=True)


def assert_same_state(a, b, what):
    assert list(a) == list(b), what
    for key in a:
        assert torch.equal(a[key], b[key]), f"{what}: {key} differs"


def lockstep(job_run, tiny_data, extra=()):
    """Both languages' 2-rank jobs with the same flags: {lang: (results, every rank's weights)}."""
    args = [*TINY, "--data", str(tiny_data), "--save-weights", "{out}/w.pt", *extra]
    out = {}
    for lang in LANGUAGES:
        doc, folder = job_run(lang, args)
        out[lang] = doc, [weights(folder, r) for r in range(2)]
    return out


def check_lockstep(runs, emulated=None):
    """Every rank's per-step losses and final weights: the same in both languages, and (emulated = emulate()'s
    result) the emulation's."""
    (py, py_w), (cpp, cpp_w) = runs["python"], runs["cpp"]
    lp, lc = py["distributed"]["step_losses"], cpp["distributed"]["step_losses"]
    print(f"\nper-rank step losses\n  python {lp}\n  c++    {lc}")
    assert len(lp) == len(lc) == 2 and all(len(row) == 3 for row in lp + lc)  # 2 ranks, 3 steps
    assert lp == lc, "per-step losses differ between the languages"
    assert lp[0] != lp[1], "both ranks saw the same rows"
    assert py["step_losses"] == lp[0] and cpp["step_losses"] == lc[0]
    for rank in range(2):
        assert_same_state(py_w[rank], cpp_w[rank], f"rank {rank}'s weights, Python vs C++")
    if emulated is not None:
        losses, states = emulated
        assert lp == losses, f"per-step losses differ from the emulation's {losses}"
        for rank in range(2):
            assert_same_state(py_w[rank], states[rank], f"rank {rank}'s weights vs the emulation's")
    for doc in (py, cpp):
        section = doc["distributed"]
        assert (section["world_size"], section["backend"], section["per_rank_batch_size"],
                section["global_batch_size"]) == (2, "gloo", 4, 8)
        assert len(section["step_seconds"]) == 2 and all(len(row) == 3 for row in section["step_seconds"])
        assert doc["epochs"][0]["images_per_second"] > 0
    return py, cpp


def test_two_ranks_compute_the_same_in_both_languages_and_as_one_process(job_run, tiny_data):
    """2-rank Python DDP = 2-rank C++ Reducer = the single-process emulation, bit for bit: every rank's per-step
    losses and weights (parameters and the rank's own BatchNorm statistics)."""
    runs = lockstep(job_run, tiny_data)
    py, cpp = check_lockstep(runs, D.emulate(tiny_data, **EMULATED))
    assert py["config"]["grad_sync"] == cpp["config"]["grad_sync"] == "ddp"
    recorded = [flag.results_key for flag in FLAGS if (flag.results_key or "").startswith("distributed.")]
    assert recorded == ["distributed.timeout_seconds"]  # the flag table's --dist-timeout, given as 120 in TINY
    assert py["distributed"]["timeout_seconds"] == cpp["distributed"]["timeout_seconds"] == 120
    assert py["final"] == cpp["final"]
    assert runs["python"][1][0]["bn1.running_mean"].ne(runs["python"][1][1]["bn1.running_mean"]).any(), \
        "rank 1's BatchNorm statistics are rank 0's: its own forward did not update them"


@pytest.mark.thorough
@pytest.mark.parametrize("extra", [("--optimizer-impl", "foreach", "--precision", "bf16"), ("--grad-sync", "flat")],
                         ids=["foreach-bf16", "flat"])
def test_two_ranks_in_lockstep_in_other_modes(job_run, tiny_data, extra):
    """The same proof with multi-tensor SGD under bf16 autocast, and with the flat-allreduce ablation (for 2 ranks the
    same bits as DDP's buckets: each gradient halved, then summed)."""
    emulated = D.emulate(tiny_data, **EMULATED, optimizer_impl="foreach", precision="bf16") \
        if "foreach" in extra else D.emulate(tiny_data, **EMULATED)
    check_lockstep(lockstep(job_run, tiny_data, extra), emulated)


@pytest.mark.thorough
def test_no_sync_blocks_skip_the_gradient_sync_in_both_languages(job_run, tiny_data):
    """--no-sync-blocks 1: steps 0 and 2 sync, step 1 does not (DDP's no_sync(); C++ leaves the reducer unarmed): the
    same bits in both languages, and not the always-synced run's."""
    runs = lockstep(job_run, tiny_data, ("--no-sync-blocks", "1"))
    py, _ = check_lockstep(runs)
    assert py["distributed"]["step_synced"] == [True, False, True]
    synced = lockstep(job_run, tiny_data)["python"][0]["distributed"]["step_losses"]
    losses = py["distributed"]["step_losses"]
    assert [row[:2] for row in losses] == [row[:2] for row in synced] and losses != synced


# Failures -------------------------------------------------------------------------------------------------------

def job_errors(proc, lang):
    """The job's `<prog>: error:` lines (every rank's stderr and torchrun's are one stream)."""
    return [line for line in proc.stderr.splitlines() if line.startswith(f"{PROGRAMS[lang]}: error: ")]


def failed_job(lang, exe, tiny_data, tmp_path, env):
    results = tmp_path / "results.json"
    started = time.monotonic()
    proc = D.run_job(lang, [*TINY, "--data", str(tiny_data), *FAST_FAIL, "--results", str(results)], exe, env=env,
                     timeout=300)
    seconds = time.monotonic() - started
    print(f"\n{lang}: exit {proc.returncode} after {seconds:.1f}s; {job_errors(proc, lang)}")
    assert proc.returncode != 0
    assert not results.exists() and not list(tmp_path.glob("results.json.tmp*")), "a results file was left"
    return proc, seconds


@pytest.mark.parametrize("lang", [pytest.param("python", marks=pytest.mark.thorough), "cpp"])
def test_a_crashed_rank_ends_the_job_in_one_line_naming_it(lang, dist_exe, tiny_data, tmp_path):
    """Rank 1 aborts at step 1 (the crash hook on that rank only): rank 0's next collective fails at once, its
    watchdog finds rank 1's heartbeat stopped, and the job ends with one line naming rank 1, no results."""
    hooks = {"BENCH_CRASH_AT_STEP": "1", "BENCH_HOOK_RANK": "1"}
    proc, _ = failed_job(lang, dist_exe(lang), tiny_data, tmp_path, hooks)
    [line] = job_errors(proc, lang)
    assert "rank 1 crashed or was killed" in line and "rank 0 saw" in line, line


@pytest.mark.parametrize("lang", ["python", pytest.param("cpp", marks=pytest.mark.thorough)])
def test_a_hung_rank_ends_the_job_within_the_timeout_in_one_line_naming_it(lang, dist_exe, tiny_data, tmp_path):
    """Rank 1 sleeps an hour after step 0 (the sleep hook on that rank only): rank 0's collective times out after
    --dist-timeout 3, its watchdog finds rank 1 behind, and the job ends with one line naming rank 1 hung at step 0
    (in seconds, not the hour)."""
    proc, seconds = failed_job(lang, dist_exe(lang), tiny_data, tmp_path,
                               {"BENCH_SLEEP_PER_STEP_MS": "3600000", "BENCH_HOOK_RANK": "1"})
    [line] = job_errors(proc, lang)
    assert "rank 1 hung at step 0" in line, line
    assert seconds < 300


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launched(rank, world_size, port, **more):
    """The environment of a rank started by hand (what torchrun would set, without its agent store)."""
    return {"RANK": str(rank), "WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
            "LOCAL_RANK": None, "LOCAL_WORLD_SIZE": None, "GROUP_WORLD_SIZE": None,
            "TORCHELASTIC_USE_AGENT_STORE": None, **more}


@pytest.mark.parametrize("lang", [pytest.param("python", marks=pytest.mark.thorough), "cpp"])
def test_the_launchers_environment_is_checked(lang, dist_exe, tiny_data, one_line_error):
    """A port in use (rank 0 hosts the store there), a rank beyond the world size and a missing MASTER_ADDR: one line
    each, before anything trains."""
    exe, args = dist_exe(lang), [*TINY, "--data", str(tiny_data), *FAST_FAIL]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = H.run_trainer(lang, args, exe, env=launched(0, 1, busy.getsockname()[1]))
        one_line_error(proc, lang, 1, "rank 0 cannot host the job's store at 127.0.0.1:", "address already in use")
    proc = H.run_trainer(lang, args, exe, env=launched(2, 2, free_port()))
    one_line_error(proc, lang, 2, "RANK 2 is not below WORLD_SIZE 2")
    proc = H.run_trainer(lang, args, exe, env=launched(0, 2, free_port(), MASTER_ADDR=None))
    one_line_error(proc, lang, 2, "needs RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT", "MASTER_ADDR not set")


@pytest.mark.thorough
@pytest.mark.parametrize("lang", LANGUAGES)
def test_ranks_started_with_different_world_sizes_end_in_one_line(lang, dist_exe, tiny_data):
    """Two ranks started by hand, rank 1 believing in 3 ranks: rank 1 says so at once, and the job (rank 0 waiting
    for rank 1 in the process group) ends within --dist-timeout without a second line."""
    port, exe = free_port(), dist_exe(lang)
    args = [*TINY, "--data", str(tiny_data), *FAST_FAIL]
    procs = [H.start_trainer(lang, args, exe, env=launched(r, w, port), stderr=subprocess.PIPE)
             for r, w in ((0, 2), (1, 3))]
    errors = []
    for p in procs:
        _, err = p.communicate(timeout=300)
        errors += [line for line in err.splitlines() if line.startswith(f"{PROGRAMS[lang]}: error: ")]
        assert p.returncode != 0
    assert errors == [f"{PROGRAMS[lang]}: error: rank 1: WORLD_SIZE 3 here but 2 on rank 0: the ranks were started "
                      "with different world sizes"], errors


# Multi-node --------------------------------------------------------------------------------------------------------

@pytest.mark.thorough
@pytest.mark.parametrize("lang", LANGUAGES)
def test_two_node_groups_train_as_one_two_rank_job(lang, dist_exe, job_run, tiny_data, tmp_path):
    """torchrun's own multi-node rendezvous (--nnodes 2, --node-rank, --rdzv-backend c10d --rdzv-endpoint), as two
    node groups of one rank each on this machine: the same bits as the single-node 2-rank job."""
    exe, port = dist_exe(lang), free_port()
    # Either node group may become rank 0 (the rendezvous decides): both name the same files, rank 0 writes them.
    args = [*TINY, "--data", str(tiny_data), "--save-weights", str(tmp_path / "w.pt"), "--results",
            str(tmp_path / "r.json")]
    rdzv = ["--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "bench"]
    H.count_trainer_starts(lang, 2)  # one rank per node group
    nodes = [subprocess.Popen(D.job_command(lang, args, exe, 1, [*rdzv, "--rdzv-conf", f"is_host={int(n == 0)}"]),
                              cwd=H.ROOT, env={**os.environ, "PYTHONPATH": str(H.ROOT)}, stderr=subprocess.PIPE,
                              text=True) for n in range(2)]
    for node in nodes:
        _, err = node.communicate(timeout=600)
        assert node.returncode == 0, err[-3000:]
    doc = load_results(tmp_path / "r.json")
    assert (doc["distributed"]["world_size"], doc["distributed"]["nodes"], doc["distributed"]["local_world_size"]) \
        == (2, 2, 1)
    single, folder = job_run(lang, [*TINY, "--data", str(tiny_data), "--save-weights", "{out}/w.pt"])
    assert doc["distributed"]["step_losses"] == single["distributed"]["step_losses"]
    assert_same_state(torch.load(tmp_path / "w.pt", weights_only=True), weights(folder, 0), "two nodes vs one")


# A C++ build without gloo -----------------------------------------------------------------------------------------

@pytest.mark.thorough
def test_a_cpp_build_without_gloo_says_so(request, tiny_data, tmp_path, one_line_error):
    """Configured with no gloo headers: CMake says so in one line, --help and every CPU run's results name the
    feature as unavailable with the reason (the suite reads it from there), and a torchrun job ends in one line."""
    build = H.ROOT / f"{request.config.getoption('build_dir')}-nogloo"
    configure = subprocess.run(["cmake", "-S", str(H.ROOT), "-B", str(build), f"-DPython3_EXECUTABLE={sys.executable}",
                                f"-DBENCH_GLOO_INCLUDE_DIR={tmp_path}"], capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout[-2000:] + configure.stderr[-2000:]
    said = [line for line in configure.stdout.splitlines() if "distributed CPU training (gloo)" in line]
    assert len(said) == 1 and "UNAVAILABLE" in said[0] and "libgloo-dev" in said[0], said
    exe = H.build_cpp(build)
    why = D.cpp_unavailable(exe)
    assert why and "without gloo's headers" in why
    proc = H.run_trainer("cpp", [*TINY, "--data", str(tiny_data), "--results", str(tmp_path / "r.json")], exe)
    assert proc.returncode == 0, proc.stderr
    assert {"feature": D.GLOO_FEATURE, "reason": why} in load_results(tmp_path / "r.json")["unavailable"]
    job = D.run_job("cpp", [*TINY, "--data", str(tiny_data), *FAST_FAIL], exe)
    [line] = job_errors(job, "cpp")
    assert f"{D.GLOO_FEATURE} is unavailable" in line, line
