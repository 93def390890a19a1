"""One vocabulary: `bench_train --help` shows cpp/vocab.h's table, and it must be bench/vocab.py's exactly
(flags, kinds, defaults, limits, choices, help texts, modes, models); the Python parser accepts exactly
vocab.FLAGS. A choice, flag or limit added in one language only fails here, naming the first difference."""

import re
import subprocess

import pytest

from bench import flags, vocab

# "  --epochs N  training epochs [1..1000000] (default: 1)": name, metavar (none for a switch), help, the
# limits ([low..high] for ints, (low..high] for a float), default.
FLAG_LINE = re.compile(r"  (?P<name>--[a-z-]+)(?: (?P<meta>\S+))?  (?P<help>.*?)"
                       r"(?: (?P<limits>[\[(]-?\d+\.\.-?\d+\]))? \(default: (?P<default>[^)]*)\)")
CHOICES = re.compile(r"\{(?P<choices>[^}]*)\}(?P<many>\[,\.\.\.\])?")
KIND_OF_METAVAR = {"N": "int", "X": "float", "PATH": "text", None: "switch", "N[,N...]": "ints"}


@pytest.fixture(scope="module")
def cpp_help(cpp_exe):
    proc = subprocess.run([str(cpp_exe), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    return proc.stdout.splitlines()


def parse_flag_line(line):
    """One --help line as a vocab.Flag (the C++ side's facts, in Python's types)."""
    m = FLAG_LINE.fullmatch(line)
    assert m, f"not a flag line in the regular layout: {line!r}"
    meta, choices = m["meta"], ()
    kind = KIND_OF_METAVAR.get(meta)
    if kind is None:
        c = CHOICES.fullmatch(meta)
        assert c, f"unknown metavar {meta!r} in {line!r}"
        kind, choices = ("names" if c["many"] else "choice"), tuple(c["choices"].split(","))
    low = high = None
    if m["limits"]:
        low, high = (int(v) for v in m["limits"][1:-1].split(".."))
        assert (m["limits"][0] == "(") == (kind == "float"), f"a float's range opens with '(': {line!r}"
    return vocab.Flag(m["name"], kind, parse_default(kind, m["default"]), m["help"], low, high, choices)


def parse_default(kind, text):
    if kind == "switch":
        return {"off": False, "on": True}[text]
    if kind in ("ints", "names"):
        items = () if text == "none" else tuple(text.split(","))
        return tuple(map(int, items)) if kind == "ints" else items
    if text == "none":
        return None
    return {"int": int, "float": float}.get(kind, str)(text)


def first_difference(python, cpp):
    """The first flag whose facts differ, as a readable line (or None)."""
    for i, (p, c) in enumerate(zip(python, cpp)):
        if p != c:
            fields = [f for f in ("name", "kind", "default", "help", "low", "high", "choices")
                      if getattr(p, f) != getattr(c, f)]
            return (f"flag {i} ({p.name}): " +
                    "; ".join(f"{f}: Python {getattr(p, f)!r}, C++ {getattr(c, f)!r}" for f in fields))
    if len(python) != len(cpp):
        return f"Python has {len(python)} flags, C++ {len(cpp)}: " \
               f"{[f.name for f in python[len(cpp):]] or [f.name for f in cpp[len(python):]]} in one only"
    return None


def test_cpp_flag_table_is_the_python_one(cpp_help):
    lines = [line for line in cpp_help if line.startswith("  --")]
    cpp = [parse_flag_line(line) for line in lines]
    python = [vocab.Flag(f.name, f.kind, f.default, f.help, f.low, f.high, tuple(f.choices)) for f in vocab.FLAGS]
    difference = first_difference(python, cpp)
    assert difference is None, f"bench/vocab.py and cpp/vocab.h differ: {difference}"


def test_cpp_modes_models_and_program_are_the_python_ones(cpp_help):
    assert cpp_help[0] == f"usage: {vocab.PROGRAMS['cpp']} [options]"
    facts = dict(line.split(": ", 1) for line in cpp_help if line.startswith(("modes: ", "models: ")))
    modes = dict(entry.split("=", 1) for entry in facts["modes"].split(", "))
    assert {name: tuple(v.split()) for name, v in modes.items()} == vocab.MODES
    assert list(modes) == list(vocab.MODES)
    models = dict(entry.split("=", 1) for entry in facts["models"].split(", "))
    assert {name: tuple(map(int, v.split())) for name, v in models.items()} == vocab.MODELS


def test_python_parser_accepts_exactly_the_table():
    parser = flags.build_parser()
    options = [s for action in parser._actions for s in action.option_strings if s not in ("-h", "--help")]
    assert options == [f.name for f in vocab.FLAGS]
    assert list(vars(parser.parse_args([]))) == [f.dest for f in vocab.FLAGS] == list(flags.Args.__dataclass_fields__)


def test_python_help_shows_each_flags_limits_and_default():
    """The Python --help says what the C++ one says, through the same text for each flag."""
    text = " ".join(flags.build_parser().format_help().split())  # argparse wraps lines
    for flag in vocab.FLAGS:
        assert " ".join(flags.help_text(flag).split()) in text, flag.name
    assert flags.vocabulary_text().splitlines()[0] in flags.build_parser().format_help()


@pytest.mark.parametrize("flag", [f for f in vocab.FLAGS if f.kind not in ("switch", "text")], ids=lambda f: f.name)
def test_python_parser_reads_each_default_as_the_table_says(flag):
    """The default as --help prints it, given on the command line, parses back to the default."""
    text = flags.default_text(flag)
    expected = list(flag.default) if flag.kind in ("ints", "names") else flag.default
    for parse in (lambda argv: vars(flags.build_parser().parse_args(argv)),  # --help's parser
                  lambda argv: vars(flags.parse_args(argv))):  # the run's parser (the same loop as C++'s)
        assert parse([flag.name, "" if text == "none" else text])[flag.dest] == expected
        assert parse([])[flag.dest] == expected
