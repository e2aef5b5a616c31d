#!/usr/bin/env python
"""A Triton client program written the way Triton's documentation shows (health + metadata +
infer on `simple`), kept unchanged so tests can check it runs against tritonlite-server."""

import argparse
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("-v", "--verbose", action="store_true", required=False, default=False)
    parser.add_argument("-u", "--url", type=str, required=False, default="localhost:8001")
    FLAGS = parser.parse_args()
    try:
        triton_client = grpcclient.InferenceServerClient(url=FLAGS.url, verbose=FLAGS.verbose)
    except Exception as e:
        print("channel creation failed: " + str(e))
        sys.exit(1)

    model_name = "simple"
    if not triton_client.is_server_live():
        print("FAILED : is_server_live")
        sys.exit(1)
    if not triton_client.is_server_ready():
        print("FAILED : is_server_ready")
        sys.exit(1)
    if not triton_client.is_model_ready(model_name):
        print("FAILED : is_model_ready")
        sys.exit(1)

    metadata = triton_client.get_server_metadata()
    if not metadata.name:
        print("FAILED : get_server_metadata")
        sys.exit(1)
    metadata = triton_client.get_model_metadata(model_name)
    if metadata.name != model_name:
        print("FAILED : get_model_metadata")
        sys.exit(1)
    config = triton_client.get_model_config(model_name)
    if config.config.name != model_name:
        print("FAILED : get_model_config")
        sys.exit(1)

    inputs = []
    outputs = []
    inputs.append(grpcclient.InferInput("INPUT0", [1, 16], "INT32"))
    inputs.append(grpcclient.InferInput("INPUT1", [1, 16], "INT32"))

    input0_data = np.arange(start=0, stop=16, dtype=np.int32)
    input0_data = np.expand_dims(input0_data, axis=0)
    input1_data = np.ones(shape=(1, 16), dtype=np.int32)

    inputs[0].set_data_from_numpy(input0_data)
    inputs[1].set_data_from_numpy(input1_data)

    outputs.append(grpcclient.InferRequestedOutput("OUTPUT0"))
    outputs.append(grpcclient.InferRequestedOutput("OUTPUT1"))

    results = triton_client.infer(model_name=model_name, inputs=inputs, outputs=outputs,
                                  headers={"test": "1"})

    statistics = triton_client.get_inference_statistics(model_name=model_name)
    if len(statistics.model_stats) != 1:
        print("FAILED: Inference Statistics")
        sys.exit(1)

    output0_data = results.as_numpy("OUTPUT0")
    output1_data = results.as_numpy("OUTPUT1")
    for i in range(16):
        print(str(input0_data[0][i]) + " + " + str(input1_data[0][i]) + " = " + str(output0_data[0][i]))
        print(str(input0_data[0][i]) + " - " + str(input1_data[0][i]) + " = " + str(output1_data[0][i]))
        if (input0_data[0][i] + input1_data[0][i]) != output0_data[0][i]:
            print("sync infer error: incorrect sum")
            sys.exit(1)
        if (input0_data[0][i] - input1_data[0][i]) != output1_data[0][i]:
            print("sync infer error: incorrect difference")
            sys.exit(1)

    try:
        triton_client.infer(model_name="no_such_model", inputs=inputs)
        print("FAILED: expected an error for an unknown model")
        sys.exit(1)
    except InferenceServerException as e:
        print("expected error: " + str(e))

    print("PASS: infer")
