"""The trainers' command line, built from the one table of flags (bench/vocab.py FLAGS). Twin of cpp/flags.cpp.

Every argument goes through the same loop as C++'s and every value through the table's own checks (kind,
limits, choices), so a bad command line is the same line in both languages: `<flag> must be <what the table
allows>, got '<text>'`, an unknown flag, a flag without its value. argparse only prints --help.
"""

import argparse
import functools
import math
import re
import sys
from dataclasses import dataclass

from bench.vocab import FLAGS, MODELS, MODES, PROGRAMS

# Plain ASCII decimal text only (no "1_000", no " 5", no "nan"), the same grammar as C++'s.
INTEGER = re.compile(r"[+-]?[0-9]+")
NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


class UsageError(Exception):
    """A bad command line: one line on stderr, exit 2."""


def parse_int(name, text, low, high):
    value = int(text) if INTEGER.fullmatch(text) else None
    if value is None or not low <= value <= high:
        raise UsageError(f"{name} must be an integer in [{low}, {high}], got '{text}'")
    return value


def parse_float(name, text, low, high):
    """A number above `low` and at most `high` (a float's lower limit is excluded: --lr > 0)."""
    value = float(text) if NUMBER.fullmatch(text) else math.nan
    if not low < value <= high:  # nan and overflow to inf fail here
        raise UsageError(f"{name} must be a number in ({low}, {high}], got '{text}'")
    return value


def parse_choice(name, text, choices):
    if text not in choices:
        raise UsageError(f"{name} must be one of {{{','.join(choices)}}}, got '{text}'")
    return text


def parse_ints(name, text, low, high, allow_empty):
    if allow_empty and text == "":
        return []
    items = text.split(",")
    if not all(INTEGER.fullmatch(item) and low <= int(item) <= high for item in items):
        raise UsageError(f"{name} must be comma-separated integers in [{low}, {high}], got '{text}'")
    return [int(item) for item in items]


def parse_names(name, text, choices):
    names = text.split(",")
    if len(set(names)) != len(names) or not all(n in choices for n in names):
        raise UsageError(f"{name} must be distinct comma-separated names from {{{','.join(choices)}}}, "
                         f"got '{text}'")
    return names


def parse_value(flag, text):
    """`text` given for `flag`, checked as the table says (switches take no text)."""
    if flag.kind == "int":
        return parse_int(flag.name, text, flag.low, flag.high)
    if flag.kind == "float":
        return parse_float(flag.name, text, flag.low, flag.high)
    if flag.kind == "choice":
        return parse_choice(flag.name, text, flag.choices)
    if flag.kind == "ints":
        return parse_ints(flag.name, text, flag.low, flag.high, allow_empty=not flag.default)
    if flag.kind == "names":
        return parse_names(flag.name, text, flag.choices)
    return text or None  # an empty path is no path, as in C++


# ---- --help: the same layout as bench_train --help (tests/test_vocab.py reads that one) ----------------------

def metavar(flag):
    choices = "{" + ",".join(flag.choices) + "}"
    return {"int": "N", "float": "X", "text": "PATH", "choice": choices, "switch": None, "ints": "N[,N...]",
            "names": choices + "[,...]"}[flag.kind]


def default_text(flag):
    if flag.kind == "switch":
        return "on" if flag.default else "off"
    if flag.kind in ("ints", "names"):
        return ",".join(map(str, flag.default)) or "none"
    return "none" if flag.default is None else str(flag.default)


def help_text(flag):
    """`help [low..high] (default: d)`; a float's range is (low..high]."""
    limits = ""
    if flag.kind in ("int", "ints"):
        limits = f" [{flag.low}..{flag.high}]"
    elif flag.kind == "float":
        limits = f" ({flag.low}..{flag.high}]"
    return f"{flag.help}{limits} (default: {default_text(flag)})"


def vocabulary_text():
    """The lines after the flags: each mode's flags, each model's stage depths."""
    modes = ", ".join(f"{name}={' '.join(flags)}" for name, flags in MODES.items())
    models = ", ".join(f"{name}={' '.join(map(str, stages))}" for name, stages in MODELS.items())
    return f"modes: {modes}\nmodels: {models}"


# ---- parsing -----------------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise UsageError(message)


def build_parser():
    """argparse over vocab.FLAGS, for --help (and tests/test_vocab.py): the same flags, types and defaults."""
    parser = _Parser(prog=PROGRAMS["python"], allow_abbrev=False, epilog=vocabulary_text(),
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Train and time a CIFAR ResNet (the twin of bench_train).")
    for flag in FLAGS:
        if flag.kind == "switch":
            parser.add_argument(flag.name, action="store_true", help=help_text(flag))
            continue
        default = list(flag.default) if flag.kind in ("ints", "names") else flag.default
        parser.add_argument(flag.name, type=functools.partial(parse_value, flag), default=default,
                            metavar=metavar(flag), help=help_text(flag))
    return parser


@dataclass(frozen=True)
class Args:
    """The parsed command line (C++: struct Args in cpp/flags.h): one field per flag, in the table's order."""

    model: str
    epochs: int
    batch_size: int
    lr: float
    data: str | None
    train_limit: int
    test_limit: int
    device: str
    seed: int
    repeat: int
    threads: int
    results: str | None
    latency_batch_sizes: list
    latency_iters: int
    latency_warmup: int
    warmup_steps: int
    save_weights: str | None
    load_weights: str | None
    eval_only: bool
    deterministic: bool
    cudnn_benchmark: bool
    record_step_losses: bool
    dump_init: str | None
    dump_batch: str | None
    dump_logits: str | None
    trace_steps: int
    trace_dir: str | None
    precision: str
    channels_last: bool
    optimizer_impl: str
    data_pipeline: str
    workers: int
    inference_paths: list
    aoti_dir: str | None
    concurrency: list
    concurrency_iters: int
    grad_sync: str
    no_sync_blocks: int
    dist_timeout: int


def check_combinations(args):
    """What no single flag can say: the aoti path's package folder, the traces' folder, and CUDA on this machine."""
    if "aoti" in args.inference_paths and not args.aoti_dir:
        raise UsageError("--inference-paths aoti needs --aoti-dir DIR (the folder `python -m suite.aoti package` "
                         "prints)")
    if args.trace_steps and not args.trace_dir:
        raise UsageError("--trace-steps needs --trace-dir DIR (where the Chrome traces go)")
    if args.device == "cuda":
        import torch  # only here: the rest of the parser needs no torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda was requested but CUDA is not available")


def find_flag(arg):
    """The flag `arg` names (before any "=value"), or UsageError."""
    name = arg.split("=", 1)[0]
    for flag in FLAGS:
        if flag.name == name:
            return flag
    raise UsageError(f"unknown flag '{arg}' (--help lists them)")


def default_value(flag):
    return list(flag.default) if flag.kind in ("ints", "names") else flag.default


def parse_args(argv=None):
    """`--flag value` and `--flag=value`, the table's checks on each value; --help prints and exits 0."""
    argv = sys.argv[1:] if argv is None else list(argv)
    values = {flag.dest: default_value(flag) for flag in FLAGS}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            from bench.dist import backends_text  # torch, for --help only

            build_parser().print_help()
            print(f"\n{backends_text()}")
            sys.exit(0)
        flag = find_flag(arg)
        value = arg.split("=", 1)[1] if "=" in arg else None
        if flag.kind == "switch" and value is not None:
            raise UsageError(f"{flag.name} takes no value, got '{arg}'")
        if flag.kind != "switch" and value is None:
            if i + 1 >= len(argv):
                raise UsageError(f"{flag.name} needs a value")
            i += 1
            value = argv[i]
        values[flag.dest] = True if flag.kind == "switch" else parse_value(flag, value)
        i += 1
    args = Args(**values)
    check_combinations(args)
    return args
