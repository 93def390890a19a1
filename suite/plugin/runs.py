"""The benchmark's trainer runs: trainer_runs(model, mode) runs each language --repeats times, languages alternating,
each a fresh process, once per session (tests/test_trainers.py and tests/test_benchmarks.py read them). With
--gate-ab each run is paired with one of the baseline commit's (suite.plugin.ab). dist_results: the same for
torchrun jobs of each --world-sizes count (test_dist_step)."""

import pytest

from suite import harness as H


def run_for_results(lang, args, exe, results, **kw):
    """Run one trainer with `--results results`: (its validated document, the process), or (why it failed, the
    process) when it exits non-zero."""
    from suite.schema import ResultsError, load_results

    proc = H.run_trainer(lang, [*args, "--results", str(results)], exe, **kw)
    if proc.returncode:
        return f"{lang} trainer failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}", proc
    try:
        return load_results(results), proc
    except ResultsError as err:  # e.g. the A/B gate's older trainers, whose documents this schema no longer reads
        return f"{lang} trainer wrote results that do not validate: {err}", proc


def run_once(done, key, run):
    """run() once per key for the session (`done` remembers); a run that failed (returned a message) fails every
    test that asks for it, with that message."""
    if key not in done:
        done[key] = run()
    if isinstance(done[key], str):
        pytest.fail(done[key], pytrace=False)
    return done[key]


def trainer_args(cfg, model, data_dir, mode="default", repeat=1, trace_dir=None):
    """cfg.trainer_args, with the mode's AOTInductor packages built first (on first use, cached across sessions, in
    a process of their own, so that no trainer's time includes a compile) when the aoti path is asked for."""
    aoti_dir = None
    if "aoti" in cfg.inference_paths:
        precision, channels_last = H.mode_precision_and_layout(mode)
        try:
            aoti_dir = H.aoti_packages(model, cfg.resolved_device, precision, channels_last, cfg.latency_sizes)
        except H.BuildError as err:
            pytest.fail(str(err), pytrace=False)
    return cfg.trainer_args(model, data_dir, mode, repeat, trace_dir, aoti_dir)


@pytest.fixture(scope="session")
def trainer_runs(request, run_config, bench_data, results_dir, exe_for, ab_baseline):
    """trainer_runs(model, mode): {language: its --repeats validated results documents, or why its run failed},
    run once per session. The languages alternate (python, cpp, python, cpp, ...), each run a fresh process, so
    that a drift of the machine's speed falls on both alike; a language whose run fails runs no more repeats.
    With --gate-ab each run of this tree is paired with one of the baseline commit's, in A B, B A order on odd
    and even repeats (a linear drift falls on both sides alike)."""
    from suite.plugin.fixtures import live_line

    done = {}

    def run_this(model, lang, mode, repeat):
        out = results_dir / f"{lang}-{model}-{mode}-r{repeat}.json"
        echo = live_line(request.config, f"{lang} {model} {mode} repeat {repeat}/{run_config.repeats}")
        echo("starting the trainer")
        trace_dir = out.with_name(f"{out.stem}-traces")  # where the report looks for them
        doc, _ = run_for_results(lang, trainer_args(run_config, model, bench_data, mode, repeat, trace_dir),
                                 exe_for(lang), out, echo=echo)
        if not isinstance(doc, str):
            request.config.bench_result_files.append(out)  # for --report
        return doc

    def run_all(model, mode):
        this = {lang: [] for lang in run_config.langs}
        for repeat in range(1, run_config.repeats + 1):
            for lang in run_config.langs:
                if isinstance(this[lang], str):
                    continue
                baseline_first = ab_baseline is not None and repeat % 2 == 1  # A B, then B A
                if baseline_first:
                    ab_baseline.run(model, lang, mode, repeat)
                doc = run_this(model, lang, mode, repeat)
                this[lang] = doc if isinstance(doc, str) else this[lang] + [doc]
                if ab_baseline is not None and not baseline_first:
                    ab_baseline.run(model, lang, mode, repeat)
        return this
    return lambda model, mode="default": run_once(done, (model, mode), lambda: run_all(model, mode))


@pytest.fixture(scope="session")
def trainer_results(trainer_runs):
    """trainer_results(model, lang, mode): that language's results documents, one per repeat; a failed run fails
    every test that reads it, with its stderr."""
    def get(model, lang, mode="default"):
        docs = trainer_runs(model, mode)[lang]
        if isinstance(docs, str):
            pytest.fail(docs, pytrace=False)
        return docs
    return get


@pytest.fixture(scope="session")
def dist_results(request, run_config, bench_data, results_dir, exe_for):
    """dist_results(model, lang, mode, world_size): that language's results documents (rank 0's) of --repeats
    torchrun jobs of `world_size` ranks (--world-sizes; suite/dist.py), the languages alternating, each job run once
    per session; the suite's trainer flags, one thread per rank unless --threads says (the same per rank at every
    world size). A failed job fails the tests that read it, with its stderr."""
    from suite import dist
    from suite.schema import ResultsError, load_results

    done = {}

    def run_job(model, lang, mode, world_size, repeat):
        out = results_dir / f"{lang}-{model}-{mode}-x{world_size}-r{repeat}.json"
        args = trainer_args(run_config, model, bench_data, mode, repeat, out.with_name(f"{out.stem}-traces"))
        proc = dist.run_job(lang, [*args, "--threads", str(run_config.threads or 1), "--results", str(out)],
                            exe_for(lang), world_size)
        if proc.returncode:
            return f"{lang} {world_size}-rank job failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
        try:
            doc = load_results(out)
        except ResultsError as err:
            return f"{lang} {world_size}-rank job wrote results that do not validate: {err}"
        request.config.bench_result_files.append(out)  # for --report
        return doc

    def run_all(model, mode, world_size):
        runs = {lang: [] for lang in run_config.langs}
        for repeat in range(1, run_config.repeats + 1):
            for lang in run_config.langs:
                if not isinstance(runs[lang], str):
                    doc = run_job(model, lang, mode, world_size, repeat)
                    runs[lang] = doc if isinstance(doc, str) else runs[lang] + [doc]
        return runs

    def get(model, lang, mode, world_size):
        docs = run_once(done, (model, mode, world_size), lambda: run_all(model, mode, world_size))[lang]
        if isinstance(docs, str):
            pytest.fail(docs, pytrace=False)
        return docs
    return get
