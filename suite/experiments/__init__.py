"""Experiments that drive the suite's library (suite/: harness, schema, stats, metrics, report, gate, ...), each an
entry point of its own, `python -m suite.experiments.<name>`:

- sweep: the crossover, Python / C++ over batch sizes, start-up and footprint;
- gate_power: how well the regression gate tells a slowdown from noise on this machine;
- gpu_session: one GPU session in priority order under a time budget, resumable (docs/gpu.md);
- aoti: AOTInductor packages, built once per configuration and cached, for the trainers' --aoti-dir.

The tests, the report and the gate import none of them.
"""
