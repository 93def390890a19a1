"""torch-api-bench: the same CIFAR ResNet training in PyTorch (Python) and LibTorch (C++), timed the same way."""
