"""The interleaved A/B gate's baseline side (--gate-ab REV): REV's tree, exported once, its trainers run alternately
with this tree's (suite.plugin.runs.trainer_runs), and the gate's baseline built from their documents."""

import json

import pytest

from bench.vocab import TEST_HOOKS
from suite import harness as H

# The trainers' test hooks act on this tree's trainers only: the baseline side runs as committed.
TEST_HOOKS_OFF = dict.fromkeys(TEST_HOOKS)


class BaselineSide:
    """The baseline commit's trainers: run(model, lang, mode, repeat) runs one (the C++ one built from that tree on
    first use) with this session's flags; its documents, or why its runs failed, go to config.bench_ab_docs."""

    def __init__(self, config, tree, run_config, data, results_dir):
        self.config, self.tree, self.run_config, self.data = config, tree, run_config, data
        self.folder = results_dir / f"gate-ab-{tree.name[:12]}"
        self.folder.mkdir(exist_ok=True)
        self.built = {}

    def exe(self, lang):
        if lang == "cpp" and "cpp" not in self.built:
            try:
                self.built["cpp"] = H.build_cpp(self.tree / "build", source=self.tree)
            except H.BuildError as err:
                self.built["cpp"] = err
        return self.built.get(lang)

    def run(self, model, lang, mode, repeat):
        from suite.plugin.fixtures import live_line
        from suite.plugin.runs import run_for_results, trainer_args

        docs = self.config.bench_ab_docs.setdefault((model, mode, lang), [])
        if isinstance(docs, str):
            return  # an earlier run failed: no more repeats of this side
        exe = self.exe(lang)
        if isinstance(exe, H.BuildError):
            self.config.bench_ab_docs[model, mode, lang] = f"baseline commit's {exe}"
            return
        out = self.folder / f"{lang}-{model}-{mode}-r{repeat}.json"
        echo = live_line(self.config, f"{lang} {model} {mode} repeat {repeat}/{self.run_config.repeats} baseline")
        echo("starting the trainer")
        args = trainer_args(self.run_config, model, self.data, mode, repeat, out.with_name(f"{out.stem}-traces"))
        doc, _ = run_for_results(lang, args, exe, out, echo=echo, root=self.tree, env=TEST_HOOKS_OFF)
        if isinstance(doc, str):
            self.config.bench_ab_docs[model, mode, lang] = f"baseline commit {self.tree.name[:12]}: {doc}"
        else:
            docs.append(doc)


@pytest.fixture(scope="session")
def ab_baseline(request, run_config, bench_data, results_dir, cache_dir):
    """--gate-ab: the baseline side (BaselineSide), its commit's tree exported once into the cache; None without."""
    commit = request.config.bench_ab_commit
    if commit is None:
        return None
    tree = H.export_commit(commit, cache_dir / "gate-ab" / commit)
    return BaselineSide(request.config, tree, run_config, bench_data, results_dir)


def interleaved_baseline(config, run):
    """(the A/B gate's baseline document, its label): built from the baseline commit's runs of this session, and
    kept beside its results documents."""
    from suite import gate

    commit = config.bench_ab_commit
    baseline = gate.interleaved_baseline(
        run, lambda model, mode, lang: config.bench_ab_docs.get((model, mode, lang), "not run"), commit)
    folder = getattr(config, "bench_results_dir", None)
    saved = ""
    if folder is not None and (folder / f"gate-ab-{commit[:12]}").is_dir():
        path = folder / f"gate-ab-{commit[:12]}" / "benchmarks.json"
        path.write_text(json.dumps(baseline, indent=1))
        saved = f" (samples: {path})"
    return baseline, f"commit {commit[:12]}'s trainers, run alternately with this tree's in this session{saved}"
