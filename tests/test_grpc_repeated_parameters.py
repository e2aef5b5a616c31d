"""Request parameters repeated on the wire, as a hostile gRPC client can send them.

A protobuf map entry may appear any number of times; the last value of a key counts. The native
fast path (csrc/transport/grpc/infer_fast_path.cc) must give the same answer as protobuf, and a request
repeating one key 150,000 times must cost linear time: it once cost a scan of every entry per
entry (about 10^10 string comparisons for this request, many seconds of the I/O thread)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from serving import ServerProcess
from tritonlite._proto import grpc_service_pb2 as pb

MODELS = Path(__file__).parent / "python_models"
TIMEOUT_S = 30  # the linear path answers in milliseconds; the quadratic one took far longer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("params")
    shutil.copytree(MODELS / "pid_echo", repo / "pid_echo")
    with ServerProcess(repo) as srv:
        yield srv


def request_bytes(*entries: tuple[str, pb.InferParameter]) -> bytes:
    """A pid_echo request followed by ``entries`` as separate map entries, in order."""
    request = pb.ModelInferRequest(model_name="pid_echo")
    request.inputs.add(name="F", datatype="FP32", shape=[2])
    request.outputs.add(name="COUNT")
    request.raw_input_contents.append(np.array([1, 2], dtype=np.float32).tobytes())
    parts = [request.SerializeToString()]
    encoded: dict[tuple[str, bytes], bytes] = {}
    for key, value in entries:
        cache_key = (key, value.SerializeToString())
        if cache_key not in encoded:
            extra = pb.ModelInferRequest()
            extra.parameters[key].CopyFrom(value)
            encoded[cache_key] = extra.SerializeToString()
        parts.append(encoded[cache_key])  # concatenated messages merge: one more map entry
    return b"".join(parts)


def infer_raw(server: ServerProcess, data: bytes) -> pb.ModelInferResponse:
    with grpc.insecure_channel(
        server.grpc_url, options=[("grpc.max_send_message_length", 64 << 20)]
    ) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=None,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        return call(data, timeout=TIMEOUT_S)


def test_the_last_value_of_a_repeated_key_counts(server: ServerProcess) -> None:
    bad, good = pb.InferParameter(string_param="soon"), pb.InferParameter(int64_param=0)
    response = infer_raw(server, request_bytes(("timeout", bad), ("timeout", good)))
    assert np.frombuffer(response.raw_output_contents[0], dtype=np.int64).tolist() == [2]
    with pytest.raises(grpc.RpcError) as info:
        infer_raw(server, request_bytes(("timeout", good), ("timeout", bad)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_key_repeated_150000_times_costs_linear_time(server: ServerProcess) -> None:
    zero = pb.InferParameter(int64_param=0)
    data = request_bytes(*[("timeout", zero)] * 150_000)
    assert len(data) > 2_000_000
    response = infer_raw(server, data)
    assert np.frombuffer(response.raw_output_contents[0], dtype=np.int64).tolist() == [2]
    # The server still answers others at once: its I/O thread was not held.
    assert infer_raw(server, request_bytes()).raw_output_contents
