"""Test-wide setup.

TRITON_INTERPRET must be set before any @triton.jit decorator runs (environment.md, "Triton on CPU"), so it is
set here, before test modules import the kernels. Model code dispatches to Triton only for CUDA tensors, so
the interpreter affects only the kernel tests that call the kernels on CPU tensors directly.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

# One thread: the suite is many small tensors on a shared 2-core machine, where 2 threads per process
# oversubscribe the cores and measured 10-50x slower (see tests/flow/conftest.py).
torch.set_num_threads(1)
