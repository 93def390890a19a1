"""The session's trainer-run cache (suite/plugin/fixtures.py): a configuration starts once per session, however many
tests read it, and suite.harness counts every trainer process the suite starts."""

from bench.vocab import LANGUAGES
from suite import harness as H
from suite.plugin import tiny


def test_a_configuration_starts_once_per_session(tiny_run, trainer_pair, tiny_data):
    first = {lang: tiny_run(lang) for lang in LANGUAGES}
    before = H.TRAINER_STARTS.copy()
    again = trainer_pair(tiny.argv(tiny_data))  # the same flags: the same runs, no process
    assert all(again[lang] is first[lang] for lang in LANGUAGES) and H.TRAINER_STARTS == before


def test_a_failing_run_starts_once_too_and_every_start_is_counted(trainer_processes, tiny_data):
    argv = ["--data", str(tiny_data), "--epochs", "0"]
    before = H.TRAINER_STARTS.copy()
    ran = trainer_processes(argv)
    assert all(ran[lang].proc.returncode == 2 for lang in LANGUAGES)
    assert trainer_processes(argv) == ran
    assert H.TRAINER_STARTS - before == {lang: 1 for lang in LANGUAGES}
    assert H.trainer_starts_line(before) == "2 trainer processes started (python 1, cpp 1)"
