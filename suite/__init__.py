"""The suite's tooling around the two trainers.

The library, which the tests, the report and the gate use: harness (build and run the trainers, prepare data),
schema (the one validator of results documents), stats (intervals, tests, noise), metrics (what each run
measured), thresholds (accuracy), traces (profiler traces), report (the report package, with the data model
RunSamples), gate (the regression gate), benchmark_compat (the pytest-benchmark internals it needs), machine
(what a measurement was made on).

The experiments, which drive the library and which nothing in it imports: suite/experiments/ (sweep,
gate_power, gpu_session, aoti), each `python -m suite.experiments.<name>`.
"""
