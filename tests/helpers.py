"""What several test modules share besides the plugin's fixtures: running a trainer that must succeed, and reading
what a cached run (suite.plugin.fixtures.Run) dumped."""

import torch

from bench.vocab import LANGUAGES
from suite import harness as H
from suite.plugin import tiny


def run_ok(lang, args, exe, **kw):
    """Run a trainer outside the session's cache (a test that needs a process of its own); it must exit 0."""
    proc = H.run_trainer(lang, args, exe, **kw)
    assert proc.returncode == 0, f"{lang} trainer failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc


def dumped(run, name):
    """The tensors a cached run wrote under tiny.FILES[name] ("init", "batch", "logits", "trained")."""
    return torch.load(run.folder / tiny.FILES[name][1], map_location="cpu", weights_only=True)


def other(lang):
    """The other language."""
    return next(x for x in LANGUAGES if x != lang)

