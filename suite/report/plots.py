"""The report's figures (matplotlib, PNG files): epoch times, accuracy curves, latency distributions, concurrent
throughput, and the sweep's crossover."""

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: no display on CI machines or GPU hosts
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from bench.vocab import INFERENCE_PATHS, LANGUAGES  # noqa: E402
from suite.report.compare import SWEEP_METRICS  # noqa: E402
from suite.report.sections import LANGUAGE_NAMES  # noqa: E402

LANGUAGE_COLORS = {"python": "tab:blue", "cpp": "tab:orange"}
# Twins often produce identical accuracy curves: different markers and dashes keep both lines visible.
LANGUAGE_LINES = {"python": {"marker": "o", "linestyle": "-", "markersize": 8},
                  "cpp": {"marker": "x", "linestyle": "--", "markersize": 10}}


def save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def row_label(model, mode):
    return model if mode == "default" else f"{model}\n{mode}"


def plot_epoch_times(section, path):
    """Grouped bars: one group per model (and mode), one bar per language, whiskers p10-p90 of the results
    table's epochs (steady state)."""
    labels = list(dict.fromkeys(row_label(r.model, r.mode) for r in section.rows))
    fig, ax = plt.subplots(figsize=(max(5, 1.8 * len(labels) + 2), 4))
    width = 0.38
    for i, language in enumerate(LANGUAGES):
        xs, heights, errs = [], [], [[], []]
        for r in section.rows:
            epochs = r.values["epoch_seconds"]
            if r.language != language or not epochs:
                continue
            xs.append(labels.index(row_label(r.model, r.mode)) + (i - 0.5) * width)
            heights.append(epochs.median)
            errs[0].append(epochs.median - epochs.percentile(10))
            errs[1].append(epochs.percentile(90) - epochs.median)
        if xs:
            ax.bar(xs, heights, width, yerr=errs, capsize=4, label=LANGUAGE_NAMES[language],
                   color=LANGUAGE_COLORS[language])
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("training time per epoch (s)")
    ax.set_title("Time per epoch, steady state (median, p10–p90)")
    ax.legend(title="language")
    save(fig, path)


def median_curve(docs, name):
    """Per-epoch median across repeated runs."""
    n = min(len(d["epochs"]) for d in docs)
    return [float(np.median([d["epochs"][e][name] for d in docs])) for e in range(n)]


def line_style(section, mode, language):
    """Lines of one mode share a colour; the language is the marker and dash. With one mode, colour = language."""
    modes = list(dict.fromkeys(r.mode for r in section.rows))
    color = LANGUAGE_COLORS[language] if len(modes) == 1 else f"C{modes.index(mode) % 10}"
    return {**LANGUAGE_LINES[language], "color": color}


def line_label(mode, language):
    return LANGUAGE_NAMES[language] + ("" if mode == "default" else f" ({mode})")


def finish_line_axes(ax, entries):
    """A legend inside the axes for a few lines; to the right of them when it would cover the data."""
    if entries <= 4:
        ax.legend()
    else:  # outside, to the right: line_figure gives it room
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)


def line_figure(section, models):
    """One axis per model, 5 in wide each, plus room for a legend beside each when there are many lines."""
    lines = max(sum(1 for r in section.rows if r.model == model) for model in models)
    return plt.subplots(1, len(models), figsize=((5 + (3.5 if lines > 4 else 0)) * len(models), 4), squeeze=False)


def plot_test_accuracy(section, path):
    """One axis per model; both languages (and every mode) on it."""
    models = list(dict.fromkeys(r.model for r in section.rows))
    fig, axes = line_figure(section, models)
    for ax, model in zip(axes[0], models):
        for r in section.rows:
            curve = median_curve(r.docs, "test_accuracy")
            if r.model != model or not curve:
                continue
            ax.plot(range(1, len(curve) + 1), curve, label=line_label(r.mode, r.language),
                    **line_style(section, r.mode, r.language))
        ax.set_title(f"{model}: test accuracy per epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        finish_line_axes(ax, len(ax.get_lines()))
    save(fig, path)


def plot_latency(section, path):
    """One axis per batch size; a box of all samples_ms per model x language (x mode, x inference path)."""
    points = sorted({p for r in section.rows for p in r.latency_ms}, key=lambda p: (INFERENCE_PATHS.index(p[0]), p[1]))
    batch_sizes = sorted({bs for _, bs in points})
    if not batch_sizes:
        return False
    boxes = max(sum(1 for p in points if p[1] == bs) for bs in batch_sizes) * len(section.rows)
    fig, axes = plt.subplots(1, len(batch_sizes), figsize=(max(4.5, 0.9 * boxes + 1.5) * len(batch_sizes), 4.6),
                             squeeze=False)
    for ax, bs in zip(axes[0], batch_sizes):
        data, labels, colors = [], [], []
        for inference_path in [p for p, b in points if b == bs]:
            for r in section.rows:
                samples = r.latency_ms.get((inference_path, bs))
                if samples:
                    data.append(samples.flat())
                    labels.append(f"{row_label(r.model, r.mode)}\n{inference_path}\n{LANGUAGE_NAMES[r.language]}")
                    colors.append(LANGUAGE_COLORS[r.language])
        box = ax.boxplot(data, patch_artist=True, showfliers=True, medianprops={"color": "black"})
        for patch, color in zip(box["boxes"], colors):
            patch.set_facecolor(color)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
        ax.set_title(f"Inference latency, batch size {bs}")
        ax.set_yscale("log")  # stalls on a shared machine are 10x the median: keep the boxes readable
        ax.set_ylabel("latency per batch (ms, log scale)")
        shown = [k for k in LANGUAGES if LANGUAGE_COLORS[k] in colors]
        ax.legend([plt.Rectangle((0, 0), 1, 1, color=LANGUAGE_COLORS[k]) for k in shown],
                  [LANGUAGE_NAMES[k] for k in shown], title="language (black line: median)", fontsize=8)
    save(fig, path)
    return True


def plot_concurrency(section, path):
    """Throughput vs threads, one axis per model; a line per language (and mode). The GIL question."""
    models = list(dict.fromkeys(r.model for r in section.rows if r.concurrency))
    if not models:
        return False
    fig, axes = line_figure(section, models)
    for ax, model in zip(axes[0], models):
        for r in section.rows:
            if r.model != model or not r.concurrency:
                continue
            threads = sorted(r.concurrency)
            ax.plot(threads, [r.concurrency[n]["images_per_second"].median for n in threads],
                    label=line_label(r.mode, r.language), **line_style(section, r.mode, r.language))
        ax.set_title(f"{model}: concurrent batch-1 inference")
        ax.set_xlabel("threads sharing the model")
        ax.set_ylabel("images/s (all threads)")
        ax.set_xscale("log", base=2)
        counts = sorted({n for r in section.rows if r.model == model for n in r.concurrency})
        ax.set_xticks(counts, [str(n) for n in counts])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_ylim(bottom=0)
        finish_line_axes(ax, len(ax.get_lines()))
    save(fig, path)
    return True


def write_plots(section, out_dir, prefix):
    """Draw the section's figures into out_dir; {title: file name} of those drawn."""
    plots = {"Time per epoch": f"{prefix}epoch_time.png", "Test accuracy per epoch": f"{prefix}test_accuracy.png"}
    plot_epoch_times(section, out_dir / plots["Time per epoch"])
    plot_test_accuracy(section, out_dir / plots["Test accuracy per epoch"])
    if plot_latency(section, out_dir / f"{prefix}latency.png"):
        plots["Inference latency distribution"] = f"{prefix}latency.png"
    if plot_concurrency(section, out_dir / f"{prefix}concurrency.png"):
        plots["Concurrent inference: images/s vs threads"] = f"{prefix}concurrency.png"
    return plots


def plot_crossover(sweep_ratios, path):
    """The sweep: Python / C++ against batch size, with its 95% interval, one axis per metric.
    sweep_ratios: {metric: {batch size: Ratio or None}}."""
    fig, axes = plt.subplots(1, len(sweep_ratios), figsize=(5.5 * len(sweep_ratios), 4), squeeze=False)
    for ax, (metric, by_bs) in zip(axes[0], sweep_ratios.items()):
        found = {bs: r.comparison for bs, r in sorted(by_bs.items()) if r}
        ax.plot(list(found), [c.ratio for c in found.values()], marker="o", label="Python / C++ (ratio of medians)")
        band = [(bs, c.low, c.high) for bs, c in found.items() if c.low is not None]
        if band:
            ax.fill_between([b for b, _, _ in band], [lo for _, lo, _ in band], [hi for _, _, hi in band],
                            alpha=0.25, label="95% CI")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(found), [str(b) for b in found])
        ax.set_xlabel("batch size")
        ax.set_ylabel("Python / C++")
        ax.set_title(SWEEP_METRICS[metric])
        ax.legend()
    save(fig, path)
