"""The C++ JSON writer (cpp/json.cpp), which only C++ has: build/json_test writes a document of awkward values
with it, and Python's json module must read back exactly the values json_test.cpp wrote: the same keys in the
same order, the same types (an int stays an int, 2.0 a float), every float to the last bit, -0.0 signed. A
non-finite number must be refused (JSON has none)."""

import json
import math
import subprocess

import pytest

EXPECTED = {
    "strings": {
        "ascii": "plain",
        "unicode": "µs, ✓, 😀, Ω",
        "controls": "\x00\x01\x07\x08\t\n\x0b\x0c\r\x1b\x1f\x7f",
        "quotes": 'say "hi"',
        "backslashes": "C:\\path\\n",
        "slash": "a/b",
        "empty": "",
        'key with "quotes" and \\': "value",
    },
    "numbers": {
        "tenth": 0.1,
        "third": 1 / 3,
        "tiny": 1e-300,
        "denormal": 5e-324,
        "huge": 1.7976931348623157e308,
        "whole_float": 2.0,
        "negative_zero": -0.0,
        "two_pow_53_plus_1": 2**53 + 1,
        "int64_min": -(2**63),
        "int64_max": 2**63 - 1,
    },
    "true": True,
    "false": False,
    "null": None,
    "empty_array": [],
    "empty_object": {},
    "nested": {"list": [1, 2.5, "x", [], {}], "objects": [{"a": [{"b": None}]}]},
    "numbers_flat": [0.5, -1.25, 1e21],
}


@pytest.fixture(scope="module")
def json_test(cpp_exe):
    """json_test is built with bench_train (cmake --build builds every target), beside it."""
    exe = cpp_exe.parent / "json_test"
    assert exe.is_file(), f"{exe} missing: CMakeLists.txt must build the json_test target"
    return exe


def same(a, b, where="document"):
    """a == b with types and float bits: Python's == says 2 == 2.0 and 0.0 == -0.0."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} {a!r} vs {type(b).__name__} {b!r}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} vs {list(b)}"
        for key in a:
            same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{where}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert a.hex() == b.hex() and math.copysign(1, a) == math.copysign(1, b), f"{where}: {a!r} vs {b!r}"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def test_awkward_values_read_back_exactly(json_test):
    proc = subprocess.run([str(json_test)], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode("utf-8")  # UTF-8 passes through; control characters are escaped
    same(json.loads(text), EXPECTED)
    # Floats are the shortest text that reads back (Python's repr), ints are digits, arrays of scalars one line.
    for fragment in ('"tenth": 0.1,', '"whole_float": 2.0,', '"negative_zero": -0.0,',
                     '"two_pow_53_plus_1": 9007199254740993,', '"numbers_flat": [0.5, -1.25, 1e+21]'):
        assert fragment in text, fragment
    assert all(ord(c) >= 0x20 for c in text.replace("\n", "")), "a raw control character in the text"


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_numbers_are_refused(json_test, value):
    proc = subprocess.run([str(json_test), value], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == "", proc.stdout
    assert proc.stderr.strip() == "json_test: refused: a non-finite number in the results"
