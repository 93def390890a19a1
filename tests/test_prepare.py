"""bench.prepare's commands the GPU session runs as its data stages: `synth` keeps a set it already wrote, and
`verify --sha256sums` checks a folder's files against its SHA256SUMS, naming the first that differs."""

import hashlib

import pytest

from bench import data as D
from bench import prepare


def test_synth_keeps_the_set_its_marker_names_and_writes_another(tmp_path):
    folder = prepare.synth(tmp_path / "s", train=10, test=4, seed=1)
    (folder / D.TEST_FILE).write_bytes(b"kept: not written again")
    files = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert prepare.synth(folder, train=10, test=4, seed=1) == folder
    assert (folder / D.TEST_FILE).read_bytes() == b"kept: not written again"
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == files
    prepare.synth(folder, train=10, test=4, seed=2)  # another set: written
    assert D.file_records(folder / D.TEST_FILE) == 4


def test_verify_checks_sha256sums_and_names_the_file_that_differs(tmp_path, capsys):
    folder = prepare.synth(tmp_path / "s", train=10, test=4, seed=1)
    names = D.TRAIN_FILES + [D.TEST_FILE]
    (folder / prepare.SHA256SUMS).write_text("".join(
        f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {'*' * (n == D.TEST_FILE)}{n}\n" for n in names))
    assert prepare.main(["verify", str(folder), "--sha256sums"]) == 0
    assert capsys.readouterr().out.count("SHA-256 OK") == len(names)
    raw = bytearray((folder / "data_batch_3.bin").read_bytes())
    raw[7] ^= 1  # one pixel: the records still read, only the checksum tells
    (folder / "data_batch_3.bin").write_bytes(bytes(raw))
    assert prepare.main(["verify", str(folder)]) == 0
    capsys.readouterr()
    assert prepare.main(["verify", str(folder), "--sha256sums"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line == f"bench.prepare: error: {folder / 'data_batch_3.bin'} does not match its SHA-256 in SHA256SUMS"
    (folder / prepare.SHA256SUMS).unlink()
    with pytest.raises(D.DataError, match="cannot read .*SHA256SUMS"):
        prepare.check_sha256sums(folder)
