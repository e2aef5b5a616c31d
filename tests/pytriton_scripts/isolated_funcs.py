"""Functions served with ModelConfig(isolated=True) by tests/test_pytriton_isolated.py: they
must be importable by module and name, as the stub process imports them."""

import os

import numpy as np
from tritonlite.pytriton.decorators import batch, triton_context
from tritonlite.pytriton.exceptions import PyTritonUserError


@batch
def add_pid(x):
    """x + 1, and the PID of the process that ran it (one per row)."""
    if int(x.flat[0]) == -1:
        os._exit(3)  # a crash: the stub dies mid-request
    if int(x.flat[0]) == -2:
        raise PyTritonUserError("x must not be -2")
    return {"y": x + 1, "pid": np.full((len(x), 1), os.getpid(), np.int64)}


def count(requests):
    """A decoupled generator: n responses for n = the first request's x."""
    n = int(requests[0]["x"].flat[0])
    for i in range(n):
        yield [{"y": np.full((1, 1), i, np.int32),
                "pid": np.full((1, 1), os.getpid(), np.int64)} for _ in requests]  # fmt: skip


@batch
@triton_context
def max_batch(x, triton_context):
    """The bound model's max_batch_size, read from the TritonContext the stub injected."""
    size = triton_context.model_configs[max_batch].max_batch_size
    return {"y": np.full_like(x, size), "pid": np.full((len(x), 1), os.getpid(), np.int64)}
