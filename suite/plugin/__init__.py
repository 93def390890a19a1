"""The suite's pytest plugin, one concern per module; conftest.py loads them through `pytest_plugins`.

  options   the command-line options (pytest_addoption)
  config    the presets and RunConfig (pure: building one reads nothing, downloads nothing, asks torch nothing),
            the configure hook that builds it, the test matrix (pytest_generate_tests)
  fixtures  the C++ build, the datasets, the results folder, and the session's trainer-run cache (trainer_run,
            trainer_pair, tiny_run: one canonical tiny configuration per mode, run once per session)
  runs      the benchmark's trainer runs (trainer_runs: --repeats, languages alternating; dist_results: torchrun
            jobs of each --world-sizes count)
  ab        the interleaved A/B gate's baseline side (--gate-ab): the other commit's tree and its runs
  hooks     pytest-benchmark's hooks, machine facts, the gate and the report at session end, and the count of
            trainer processes the session started
"""

# In import order: a module another imports comes first (pytest rewrites the asserts of each as it imports it).
PLUGINS = [f"suite.plugin.{name}" for name in ("options", "config", "runs", "fixtures", "ab", "hooks")]
