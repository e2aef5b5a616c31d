"""Copied next to every parity model's ``model.py``: records what the model receives.

Runs inside the real Triton's python backend stub and inside tritonlite's, so it uses only the
``pb_utils`` API both provide. Each record is one JSON line appended to
``<model directory>/observations.jsonl`` before the model answers, so a client that has its
response can read what the model saw.
"""

import json
import os

import numpy as np


def _values(array):
    if array.dtype == np.object_ or array.dtype.kind in "SU":
        return [
            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
            for v in array.reshape(-1).tolist()
        ]
    return array.reshape(-1).tolist()


def describe_tensor(tensor):
    array = tensor.as_numpy()
    return {"shape": list(array.shape), "dtype": str(array.dtype), "values": _values(array)}


def describe_request(request, with_values=True):
    """What the model sees of one request: inputs, controls, parameters, requested outputs."""
    inputs = {}
    for tensor in request.inputs():
        entry = describe_tensor(tensor)
        if not with_values:
            entry.pop("values")
        inputs[tensor.name()] = entry
    parameters = request.parameters()
    return {
        "inputs": dict(sorted(inputs.items())),
        "correlation_id": request.correlation_id(),
        "flags": request.flags(),
        "parameters": json.loads(parameters) if parameters else {},
        "requested_outputs": sorted(request.requested_output_names()),
    }


def record(args, entry):
    """Append ``entry`` (JSON-able) to this model's observations file."""
    path = os.path.join(args["model_repository"], "observations.jsonl")
    with open(path, "a") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
