"""The trainers' command line, built from the one table of flags (bench/vocab.py FLAGS). Twin of cpp/flags.cpp.

Every argument goes through the same loop as C++'s and every value through the table's own checks (kind,
limits, choices), so a bad command line is the same line in both languages: `<flag> must be <what the table
allows>, got '<text>'`, an unknown flag, a flag without its value. --help is help_text(), which bench_train
prints too.
"""

import math
import re
import sys
from dataclasses import make_dataclass

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


# ---- --help: one text for both trainers (bench/generate.py writes it into bench_train) ---------------------

API = {"python": "PyTorch", "cpp": "LibTorch"}


def metavar(flag):
    choices = "{" + ",".join(flag.choices) + "}"
    return {"int": "N", "float": "X", "text": "PATH", "choice": choices, "switch": None, "ints": "N[,N...]",
            "names": choices + "[,...]"}[flag.kind]


def default_arg(flag):
    """The text that, given for the flag, parses to its default ("" for none, off or the empty list). C++ parses
    it at start, as a value given on the command line."""
    if flag.kind in ("ints", "names"):
        return ",".join(map(str, flag.default))
    return "" if flag.default is None or flag.kind == "switch" else str(flag.default)


def flag_help(flag):
    """`help [low..high] (default: d)`; a float's range is (low..high]."""
    limits = ""
    if flag.kind in ("int", "ints"):
        limits = f" [{flag.low}..{flag.high}]"
    elif flag.kind == "float":
        limits = f" ({flag.low}..{flag.high}]"
    shown = default_arg(flag) or ("off" if flag.kind == "switch" else "none")
    return f"{flag.help}{limits} (default: {shown})"


def help_text(lang):
    """The --help of `lang`'s trainer: usage, one line per flag, each mode's flags and each model's stage depths."""
    twin = next(PROGRAMS[other] for other in PROGRAMS if other != lang)
    lines = [f"usage: {PROGRAMS[lang]} [options]", "",
             f"Train and time a CIFAR ResNet with {API[lang]}; {twin} is its twin (the same flags and results).", "",
             "options:", "  -h, --help  show this help and exit"]
    lines += [f"  {' '.join(filter(None, (flag.name, metavar(flag))))}  {flag_help(flag)}" for flag in FLAGS]
    modes = ", ".join(f"{name}={' '.join(flags)}" for name, flags in MODES.items())
    models = ", ".join(f"{name}={' '.join(map(str, stages))}" for name, stages in MODELS.items())
    return "\n".join([*lines, "", f"modes: {modes}", f"models: {models}"]) + "\n"


# ---- parsing -----------------------------------------------------------------------------------------------

# Python's type of each kind's value (C++: the field types of the generated struct Args).
VALUE_TYPES = {"int": int, "float": float, "text": str | None, "choice": str, "switch": bool, "ints": list,
               "names": list}
# The parsed command line (C++: struct Args, generated from the same table): one field per flag, in its order.
Args = make_dataclass("Args", [(flag.dest, VALUE_TYPES[flag.kind]) for flag in FLAGS], frozen=True,
                      namespace={"__module__": __name__, "__doc__": "The parsed command line: one field per flag."})


def check_combinations(args):
    """What no single flag can say: the aoti path's package folder, the traces' folder, and CUDA on this machine."""
    if "aoti" in args.inference_paths and not args.aoti_dir:
        raise UsageError("--inference-paths aoti needs --aoti-dir DIR (the folder "
                         "`python -m suite.experiments.aoti package` prints)")
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


def parse_args(argv=None):
    """`--flag value` and `--flag=value`, the table's checks on each value; --help prints and exits 0."""
    argv = sys.argv[1:] if argv is None else list(argv)
    values = {flag.dest: list(flag.default) if flag.kind in ("ints", "names") else flag.default for flag in FLAGS}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            sys.stdout.write(help_text("python"))
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
