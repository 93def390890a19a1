"""pytest-benchmark stores and compares the numbers measured inside the trainers.

The trainers time themselves (device-synchronized epochs, per-sample latencies); pytest-benchmark's
subprocess wall time would include interpreter start-up, data loading and the C++ binary's load. So each
test replays the trainer's own samples through pytest-benchmark's public `pedantic` API with a replay
timer: round i lasts exactly sample i. Compare, save and the regression gate then work on those numbers.
"""

import pytest



class ReplayTimer:
    """A clock for pedantic(): each (start, end) pair of reads is 0.0 and then the next recorded sample."""

    def __init__(self):
        self.samples = []
        self._started = False

    def load(self, samples_seconds):
        self.samples = list(samples_seconds)
        self._started = False

    def __call__(self):
        if not self._started:
            self._started = True
            return 0.0
        self._started = False
        return self.samples.pop(0)


REPLAY = ReplayTimer()


def pytest_generate_tests(metafunc):
    cfg = metafunc.config.bench_run
    if "model" in metafunc.fixturenames:
        metafunc.parametrize("model", cfg.models)
    if "lang" in metafunc.fixturenames:
        metafunc.parametrize("lang", cfg.langs)
    if "latency_bs" in metafunc.fixturenames:
        metafunc.parametrize("latency_bs", [int(b) for b in cfg.latency_batch_sizes.split(",")],
                             ids=lambda b: f"bs{b}")


def replay(benchmark, samples_seconds):
    REPLAY.load(samples_seconds)
    benchmark.pedantic(lambda: None, rounds=len(samples_seconds), iterations=1, warmup_rounds=0)
    if not benchmark.disabled:  # disabled under xdist or --benchmark-disable
        assert benchmark.stats.stats.data == list(samples_seconds)


def common_info(doc):
    return {"language": doc["language"], "model": doc["model"], "device": doc["device"]["name"],
            "dataset": doc["dataset"], "config": doc["config"], "final": doc["final"],
            "torch_version": doc["torch_version"]}


@pytest.mark.benchmark(timer=REPLAY, disable_gc=False, warmup=False)
def test_epoch_time(benchmark, trainer_results, model, lang):
    """One round per epoch: its device-synchronized training time."""
    doc = trainer_results(model, lang)
    benchmark.group = f"{model} train epoch"
    benchmark.extra_info.update(common_info(doc))
    benchmark.extra_info["images_per_second"] = [e["images_per_second"] for e in doc["epochs"]]
    benchmark.extra_info["train_loss"] = [e["train_loss"] for e in doc["epochs"]]
    benchmark.extra_info["test_accuracy"] = [e["test_accuracy"] for e in doc["epochs"]]
    replay(benchmark, [e["train_seconds"] for e in doc["epochs"]])


@pytest.mark.benchmark(timer=REPLAY, disable_gc=False, warmup=False)
def test_latency(benchmark, trainer_results, model, lang, latency_bs):
    """One round per latency sample (forward + sync) at this batch size."""
    doc = trainer_results(model, lang)
    lat = next(x for x in doc["latency"] if x["batch_size"] == latency_bs)
    benchmark.group = f"{model} latency bs={latency_bs}"
    benchmark.extra_info.update(common_info(doc))
    benchmark.extra_info.update({k: lat[k] for k in ("median_ms", "p90_ms", "p99_ms", "mean_ms")})
    replay(benchmark, [ms / 1000 for ms in lat["samples_ms"]])
