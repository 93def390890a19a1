// Weights files: a torch archive of named tensors (torch.save of a dict), written and read the same way in both
// languages: the state dict (--save-weights, --load-weights, --dump-init) and the --dump-* files (twin of
// bench/weights.py).
#pragma once

#include <string>

#include "model.h"  // ResNet, NamedTensors

// Writes {name: tensor} as a torch pickle of CPU contiguous tensors: torch.load reads it.
void save_tensor_dict(const NamedTensors& tensors, const std::string& path);

// The state dict, in its order: torch.load and load_weights read it.
void save_weights(const ResNet& model, const std::string& path);

// Reads a dict of tensors written by torch.save or save_weights; every key, shape and dtype must fit.
// std::runtime_error names the file and the cause ("cannot read weights file ...", "... does not fit ...").
void load_weights(ResNet& model, const std::string& path, const std::string& model_name);
