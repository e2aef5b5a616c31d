"""A PyTriton script: add/sub on INT32 [16] with @batch, max_batch_size 64.

Run as is by PyTriton (``PYTRITON_IMPORT=pytriton``) and by tritonlite (the default): only the
imports differ. Ports: GRPC_PORT / HTTP_PORT / METRICS_PORT (defaults 8001/8000/8002).
"""

import importlib
import os

import numpy as np

package = os.environ.get("PYTRITON_IMPORT", "tritonlite.pytriton")
batch = importlib.import_module(f"{package}.decorators").batch
ModelConfig = importlib.import_module(f"{package}.model_config").ModelConfig
Tensor = importlib.import_module(f"{package}.model_config").Tensor
triton_module = importlib.import_module(f"{package}.triton")
Triton, TritonConfig = triton_module.Triton, triton_module.TritonConfig


@batch
def add_sub(INPUT0, INPUT1):
    return {"OUTPUT0": INPUT0 + INPUT1, "OUTPUT1": INPUT0 - INPUT1}


config = TritonConfig(
    grpc_port=int(os.environ.get("GRPC_PORT", 8001)),
    http_port=int(os.environ.get("HTTP_PORT", 8000)),
    metrics_port=int(os.environ.get("METRICS_PORT", 8002)),
)
with Triton(config=config) as triton:
    triton.bind(
        model_name="add_sub",
        infer_func=add_sub,
        inputs=[Tensor(name="INPUT0", dtype=np.int32, shape=(16,)),
                Tensor(name="INPUT1", dtype=np.int32, shape=(16,))],
        outputs=[Tensor(name="OUTPUT0", dtype=np.int32, shape=(16,)),
                 Tensor(name="OUTPUT1", dtype=np.int32, shape=(16,))],
        config=ModelConfig(max_batch_size=64),
    )  # fmt: skip
    triton.serve()
