"""Weights files: a torch archive of named tensors (torch.save of a dict), written and read the same way in both
languages: the state dict (--save-weights, --load-weights, --dump-init) and the --dump-* files. Twin of
cpp/weights.cpp."""

import io
from pathlib import Path

import torch

from bench.runtime import first_line


class WeightsError(Exception):
    """A weights file is unreadable or does not fit the model."""


def save_tensor_dict(tensors, path):
    """{name: tensor} as a torch pickle of CPU contiguous tensors (weights files, --dump-* files)."""
    torch.save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, path)


def save_weights(model, path):
    """The state dict, in its order: torch.load and C++ torch::pickle_load read it."""
    save_tensor_dict(model.state_dict(), path)


# torch.save writes a zip archive: it starts with a local file header and ends with the end-of-directory
# record (22 bytes, then a comment of at most 64 KiB, which torch never writes).
ZIP_START = b"PK\x03\x04"
ZIP_END = b"PK\x05\x06"
ZIP_END_SPAN = 22 + 65535


def archive_problem(data):
    """Why `data`, a weights file's bytes, cannot be a torch archive, or None. Checked before torch reads it,
    so that an empty, foreign or truncated file gets one clear cause in both languages instead of torch's
    generic notices. Twin of archive_problem in cpp/weights.cpp."""
    if not data:
        return "the file is empty"
    if not data.startswith(ZIP_START):
        return "not a torch archive (torch.save writes a zip file)"
    if ZIP_END not in data[-ZIP_END_SPAN:]:
        return "truncated: the torch archive (a zip file) has no end record"
    return None


def read_weights(path):
    """The object a weights file holds, loaded safely (weights_only); WeightsError names the file and cause."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:  # the file itself: the same text as C++'s strerror
        raise WeightsError(f"cannot read weights file {path}: {err.strerror or err}") from None
    problem = archive_problem(data)
    if problem:
        raise WeightsError(f"cannot read weights file {path}: {problem}")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a bad archive
        raise WeightsError(f"cannot read weights file {path}: torch cannot load it: "
                           f"{first_line(err).split('. ')[0]}") from None


def check_fits(own, loaded, path, model_name):
    """Every key, shape and dtype of the model's state dict, and nothing else; shapes print as lists in
    both languages."""
    if not isinstance(loaded, dict):
        raise WeightsError(f"weights file {path} does not hold a dict of tensors")
    unfit = f"weights file {path} does not fit {model_name}: "
    for key, value in own.items():
        if key not in loaded:
            raise WeightsError(f"{unfit}missing {key}")
        got = loaded[key]
        if not isinstance(got, torch.Tensor) or got.shape != value.shape or got.dtype != value.dtype:
            shape = list(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise WeightsError(f"{unfit}{key} is {shape}, expected {list(value.shape)}")
    extra = [k for k in loaded if k not in own]
    if extra:
        raise WeightsError(f"{unfit}unexpected {extra[0]}")


def load_weights(model, path, model_name):
    loaded = read_weights(path)
    check_fits(model.state_dict(), loaded, path, model_name)
    model.load_state_dict(loaded)
