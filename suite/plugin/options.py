"""The suite's command-line options (docs/suite.md, "Options", documents each one)."""

from bench.vocab import DEVICES, INFERENCE_PATHS, LANGUAGES, MODES
from suite import harness as H


def pytest_addoption(parser):
    g = parser.getgroup("torch-api-bench")
    g.addoption("--epochs", type=int, default=1, help="training epochs per trainer run (default 1)")
    g.addoption("--device", default="auto", help=f"{' | '.join(DEVICES)} (default auto)")
    g.addoption("--data", default=None,
                help="CIFAR-10 binary folder, or 'official' (downloaded to the cache on first use; offline: the "
                     "synthetic set, with a warning) (default: the cached synthetic smoke set)")
    g.addoption("--train-limit", type=int, default=None, help="first N training records (0 = all)")
    g.addoption("--test-limit", type=int, default=None, help="first N test records (0 = all)")
    g.addoption("--batch-size", type=int, default=None, help="training batch size")
    g.addoption("--lr", type=float, default=None, help="peak learning rate")
    g.addoption("--models", default=None,
                help="comma-separated models (default: resnet18 for the smoke preset, resnet18,resnet34 otherwise)")
    g.addoption("--langs", default=",".join(LANGUAGES), help=f"comma-separated languages: {','.join(LANGUAGES)}")
    g.addoption("--modes", default="default",
                help=f"comma-separated trainer modes: {','.join(MODES)} (default: default)")
    g.addoption("--threads", type=int, default=0, help="CPU intra-op threads per trainer (0 = torch default)")
    g.addoption("--workers", type=int, default=2, help="DataLoader workers of the idiomatic mode (default 2)")
    g.addoption("--seed", type=int, default=0, help="seed for both trainers")
    g.addoption("--warmup-steps", type=int, default=None,
                help="untimed training steps before the first timed one (default: the trainers' own default)")
    g.addoption("--latency-iters", type=int, default=None, help="latency samples per batch size and path")
    g.addoption("--latency-batch-sizes", default=None, help="comma-separated latency batch sizes")
    g.addoption("--inference-paths", default="eager",
                help=f"comma-separated latency paths: {','.join(INFERENCE_PATHS)} (default: eager)")
    g.addoption("--concurrency", default="",
                help="comma-separated thread counts for concurrent batch-1 inference (default: none)")
    g.addoption("--concurrency-iters", type=int, default=50, help="requests per thread (default 50)")
    g.addoption("--results-dir", default=None, help="keep each trainer's results JSON here")
    g.addoption("--report", default=None, help="write the report (suite.report) for this run's results here")
    g.addoption("--build-dir", default=str(H.ROOT / "build"), help="C++ build folder (default build/)")
    g.addoption("--trace-steps", type=int, default=0,
                help="each trainer records K training steps and K inference samples per batch size with the "
                     "profiler, beside its results (<results>-traces/); the report shows where a step's time goes "
                     "(default 0: off)")
    g.addoption("--repeats", type=int, default=1,
                help="trainer runs per (model, mode) and language, languages alternating, each a fresh process "
                     "(default 1)")
    g.addoption("--gate", action="store_true",
                help="at the end, the regression gate (suite/gate.py) against the newest stored baseline of this "
                     "machine and configuration; none: this run is saved as the first")
    g.addoption("--gate-baseline", default=None, help="the gate's baseline: this pytest-benchmark file")
    g.addoption("--gate-ab", default=None, metavar="REV",
                help="the interleaved A/B gate: run git revision REV's trainers alternately with this tree's (A B B A "
                     "...), same flags, and gate this tree against them (no stored baseline)")
    g.addoption("--gate-thresholds", default=None, help="the gate's thresholds (default suite/gate.toml)")
    # Data-parallel benchmarks (suite/dist.py, tests/test_benchmarks.py test_dist_step)
    g.addoption("--world-sizes", default="",
                help="comma-separated rank counts: each language's trainer also runs as a torchrun job of that many "
                     "ranks on this machine, one thread per rank unless --threads (default: none)")
