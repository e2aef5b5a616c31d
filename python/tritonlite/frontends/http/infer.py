"""The ``/infer`` endpoint: decode -> submit -> encode.

- decode: the body (JSON tensors, Triton's binary tensor data extension, a raw binary request,
  shared-memory inputs) into an ``InferRequest`` (``decode_request``; a big JSON header is
  decoded off the event loop in bounded steps, see ``http_bigjson``);
- submit: to the ``Server`` (``Server.submit``), with forwarded headers as parameters;
- encode: the outputs into the reply (JSON, binary, shared memory, classification), then the
  content coding the client accepts.

Binary inputs are zero-copy views of the request body; the shared-memory regions a request
names stay registered until its reply is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import numpy as np

from ... import _core, sizes
from ..._proto import model_config_pb2 as mc
from ...datatypes import DATATYPES, to_wire_name
from ...errors import NOT_FOUND, UNSUPPORTED, TritonError
from ...shared_memory import SystemSharedMemoryRegistry
from .. import http_bigjson, request_parameters
from .. import http_codec as codec
from ..classification import classify
from ..input_errors import bytes_count_error, input_size_error, request_id_prefix
from .context import OFFLOAD_BYTES, Call, HttpContext
from .fields import (
    as_bool, as_object, as_shape, as_string, as_uint, atol, named_object, parse_version,
)  # fmt: skip
from .reply import BINARY, HEADER_LENGTH, JSON, Reply, bad

Tensor = _core.Tensor

#: Inference headers (JSON) at least this big are decoded off the event loop, in bounded steps.
BIG_JSON_BYTES = 1024 * 1024

SEQUENCE_START = 1
SEQUENCE_END = 2

#: How an output is returned.
JSON_KIND, BINARY_KIND, SHM_KIND = 0, 1, 2


@dataclass
class OutputSpec:
    """How one requested output is returned."""

    kind: int = JSON_KIND
    classes: int = 0
    region: str = ""
    offset: int = 0
    byte_size: int | None = None


@dataclass
class InferRequest:
    """A decoded inference request: inputs, wanted outputs and scheduling arguments."""

    inputs: list[tuple[str, Any]]
    outputs: dict[str, OutputSpec] | None  # None: every output, as `default_kind`
    default_kind: int
    request_id: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: The shared-memory regions the request names (inputs and outputs).
    regions: list[str] = field(default_factory=list)


# ---- the endpoint ----------------------------------------------------------------------------


async def infer(ctx: HttpContext, call: Call) -> Reply:
    """``POST /v2/models/{m}[/versions/{v}]/infer``, traced when the trace settings sample it."""
    model, version = unquote(call.args[0] or ""), parse_version(call.args[1])
    loaded = ctx.loaded(model, version)
    if loaded.config.model_transaction_policy.decoupled:
        raise TritonError(
            "HTTP end point doesn't support models with decoupled transaction policy",
            UNSUPPORTED,
        )
    trace = ctx.server.tracing.sample(model, call.headers)
    if trace is None:
        return await _serve(ctx, call, model, version, loaded, None)
    trace.capture("HTTP_RECV_START", call.received_ns)
    try:
        reply = await _serve(ctx, call, model, version, loaded, trace)
    except BaseException:
        trace.release()
        raise
    reply.trace = trace
    return reply


async def _serve(
    ctx: HttpContext, call: Call, model: str, version: int | None, loaded: Any, trace: Any
) -> Reply:
    body = await ctx.body(call.headers, call.read_body)
    if trace is not None:
        trace.capture("HTTP_RECV_END")
    request = await decode_request(ctx.shm, model, loaded, call.headers, body)
    regions = request.regions
    if regions:  # in use (not unregistered) until the response is written
        ctx.shm.acquire(regions)
    try:
        tensors = await submit(ctx, model, version, call.headers, request, trace)
        reply = encode_response(ctx.shm, model, loaded, request, tensors)
        return await encode_content(reply, call.headers)
    finally:
        if regions:
            ctx.shm.release(regions)


# ---- decode ----------------------------------------------------------------------------------


async def decode_request(
    shm: SystemSharedMemoryRegistry,
    model: str,
    loaded: Any,
    headers: Mapping[str, str],
    body: bytes,
) -> InferRequest:
    """The request in ``body`` (decompressed): a JSON header of
    ``Inference-Header-Content-Length`` bytes (the whole body without it) and binary data, or
    a raw binary request (length 0)."""
    length_text = headers.get(HEADER_LENGTH.lower())
    if length_text is None:
        header_length = len(body)
    else:
        header_length = atol(length_text)
        if header_length < 0 or header_length > len(body):
            raise bad(
                f"inference header size should be in range (0, {len(body)}), got: {length_text}"
            )
    if header_length == 0:
        return raw_request(loaded, body)
    if header_length < BIG_JSON_BYTES:
        header = codec.loads(memoryview(body)[:header_length])
        return parse_infer(shm, model, loaded, header, body, header_length)
    return await asyncio.get_running_loop().run_in_executor(
        None, parse_big_infer, shm, model, loaded, body, header_length
    )


def parse_big_infer(
    shm: SystemSharedMemoryRegistry, model: str, loaded: Any, body: bytes, header_length: int
) -> InferRequest:
    """``parse_infer`` of a big JSON header, in a worker thread: long number arrays are
    decoded a piece at a time (see http_bigjson), or the usual way where that can't be
    exact."""
    view = memoryview(body)[:header_length]
    try:
        header = http_bigjson.loads(view)
        return parse_infer(shm, model, loaded, header, body, header_length, spans=True)
    except http_bigjson.Fallback:
        header = codec.loads(view)
        return parse_infer(shm, model, loaded, header, body, header_length)


def parse_infer(
    shm: SystemSharedMemoryRegistry,
    model: str,
    loaded: Any,
    header: Any,
    body: bytes,
    header_length: int,
    spans: bool = False,
) -> InferRequest:
    """An inference request from its JSON header (``header``, parsed) and binary data (what
    follows ``header_length`` in ``body``); ``spans``: the header came from ``http_bigjson``."""
    if not isinstance(header, dict) or "inputs" not in header:
        raise bad(
            "Unable to parse 'inputs': attempt to access non-existing object member 'inputs'"
        )
    raw_inputs = header["inputs"]
    if not isinstance(raw_inputs, list):
        raise bad("Unable to parse 'inputs': attempt to access JSON non-array as array")
    request_id = as_string(header["id"], "id") if "id" in header else ""
    params = as_object(header.get("parameters", {}), "parameters")
    kwargs = request_parameters_of(params)
    default_kind = JSON_KIND
    if "binary_data_output" in params and as_bool(
        params["binary_data_output"], "binary_data_output"
    ):
        default_kind = BINARY_KIND

    inputs: list[tuple[str, Any]] = []
    regions: list[str] = []
    position = header_length
    for raw in raw_inputs:
        tensor, name = named_object(raw, "inputs")
        for member in ("datatype", "shape"):
            if member not in tensor:
                raise bad(
                    f"Unable to parse '{member}': attempt to access non-existing object "
                    f"member '{member}'"
                )
        datatype = as_string(tensor["datatype"], "datatype")
        if datatype not in DATATYPES:
            raise bad(f"invalid datatype for input {name}")
        shape = as_shape(tensor["shape"])
        tparams = as_object(tensor.get("parameters", {}), "parameters")
        sources: list[str] = [
            k for k in ("binary_data_size", "shared_memory_region") if k in tparams
        ]
        if "data" in tensor:
            sources.insert(0, "data")
        if len(sources) != 1:
            got = " ".join(f"'{s}'" for s in sources) if sources else "no field is set"
            raise bad(
                "Input must set only one of the following fields: 'data', 'binary_data_size' "
                "in 'parameters', 'shared_memory_region' in 'parameters'. But "
                + (f"set {got}" if sources else got)
            )
        source = sources[0]
        if source == "data":
            data = tensor["data"]
            decode = (
                http_bigjson.tensor_from_spans
                if spans and http_bigjson.has_spans(data)
                else codec.tensor_from_json
            )
            value: Any = decode(name, datatype, shape, data)
        elif source == "binary_data_size":
            size = as_uint(tparams["binary_data_size"], "binary_data_size")
            if position + size > len(body):
                raise bad(
                    f"unexpected size for input '{name}', expecting "
                    f"{position + size - len(body)} additional bytes for model '{model}'"
                )
            value = tensor_from_bytes(
                loaded.config, request_id, name, datatype, shape, body, position, size
            )
            position += size
        else:
            region = as_string(tparams["shared_memory_region"], "shared_memory_region")
            offset = as_uint(tparams.get("shared_memory_offset", 0), "shared_memory_offset")
            if "shared_memory_byte_size" not in tparams:
                raise bad(
                    f"input '{name}' of model '{model}' names shared memory region "
                    f"'{region}' without 'shared_memory_byte_size'"
                )
            size = as_uint(tparams["shared_memory_byte_size"], "shared_memory_byte_size")
            # Triton checks the window before the size of the tensor it holds
            shm.check_window(region, offset, size)
            check_byte_size(loaded.config, request_id, name, datatype, shape, size)
            value = shm.input_tensor(region, offset, size, datatype, shape)
            regions.append(region)
        inputs.append((name, value))
    if position != len(body):
        raise bad(f"unexpected additional input data for model '{model}'")

    outputs: dict[str, OutputSpec] | None = None
    if "outputs" in header:
        raw_outputs = header["outputs"]
        if not isinstance(raw_outputs, list):
            raise bad("Unable to parse 'outputs': attempt to access JSON non-array as array")
        outputs = {}
        for raw in raw_outputs:
            spec_json, name = named_object(raw, "outputs")
            outputs[name] = spec = output_spec(shm, spec_json, default_kind)
            if spec.region:
                regions.append(spec.region)
    return InferRequest(inputs, outputs, default_kind, request_id, kwargs, regions)


def output_spec(shm: SystemSharedMemoryRegistry, spec_json: dict[str, Any], default_kind: int) -> OutputSpec:
    params = as_object(spec_json.get("parameters", {}), "parameters")
    spec = OutputSpec(default_kind)
    if "binary_data" in params:
        spec.kind = BINARY_KIND if as_bool(params["binary_data"], "binary_data") else JSON_KIND
    if "classification" in params:
        try:
            spec.classes = as_uint(params["classification"], "classification")
        except TritonError:
            raise bad(
                "Unable to set 'classification': attempt to access JSON non-unsigned-integer "
                "as unsigned-integer"
            ) from None
    if "shared_memory_region" in params:
        if spec.kind == BINARY_KIND and "binary_data" in params:
            raise bad("Output can't set both 'shared_memory_region' and 'binary_data'")
        if spec.classes:
            raise bad("Output can't set both 'shared_memory_region' and 'classification'")
        spec.kind = SHM_KIND
        spec.region = as_string(params["shared_memory_region"], "shared_memory_region")
        spec.offset = as_uint(params.get("shared_memory_offset", 0), "shared_memory_offset")
        if "shared_memory_byte_size" in params:
            spec.byte_size = as_uint(params["shared_memory_byte_size"], "shared_memory_byte_size")
        if spec.region not in shm:
            raise TritonError(
                f"Unable to find shared memory region: '{spec.region}'", NOT_FOUND
            )
    return spec


def request_parameters_of(params: dict[str, Any]) -> dict[str, Any]:
    """Scheduling arguments from Triton's request parameters."""
    kwargs: dict[str, Any] = {}
    if "priority" in params:
        kwargs["priority"] = as_uint(params["priority"], "priority")
    if "timeout" in params:
        kwargs["timeout_us"] = as_uint(params["timeout"], "timeout")
    if "sequence_id" in params:
        seq = params["sequence_id"]
        if isinstance(seq, str):
            kwargs["correlation_id_str"] = as_string(seq, "sequence_id")
        else:
            try:
                kwargs["correlation_id"] = as_uint(seq, "sequence_id")
            except TritonError:
                raise bad(
                    "Unable to parse 'sequence_id': expected an unsigned integer or a string"
                ) from None
    flags = 0
    if "sequence_start" in params and as_bool(params["sequence_start"], "sequence_start"):
        flags |= SEQUENCE_START
    if "sequence_end" in params and as_bool(params["sequence_end"], "sequence_end"):
        flags |= SEQUENCE_END
    if flags:
        kwargs["flags"] = flags
    custom = {k: v for k, v in params.items() if request_parameters.is_custom(k, http=True)}
    for key, value in custom.items():
        request_parameters.check_json_value(key, value)
    if custom:
        kwargs["parameters"] = custom
    return kwargs


def check_byte_size(
    config: Any, request_id: str, name: str, datatype: str, shape: list[int], size: int
) -> None:
    if datatype == "BYTES":
        return
    try:
        expected = sizes.byte_size(datatype, shape)  # exact: [2**62] FP32 is not 0 bytes
    except TritonError as e:  # [0, 2**62]: no elements, and still no array can have it
        raise bad(f"input '{name}' for model '{config.name}': {e.message}") from None
    if size != expected:
        raise input_size_error(config, request_id, name, datatype, shape, expected, size)


def tensor_from_bytes(
    config: Any,
    request_id: str,
    name: str,
    datatype: str,
    shape: list[int],
    body: bytes,
    offset: int,
    size: int,
) -> Any:
    """A zero-copy view of binary tensor data in the request body."""
    model = config.name
    check_byte_size(config, request_id, name, datatype, shape, size)
    try:
        return Tensor.from_buffer(datatype, shape, body, offset, size)
    except TritonError as e:
        if datatype == "BYTES":
            data = memoryview(body)[offset : offset + size]
            counted = bytes_count_error(config, request_id, name, shape, data)
            if counted is not None:
                raise counted from None
        raise bad(
            f"invalid BYTES data for input '{name}' of model '{model}': {e.message}"
        ) from None


def raw_request(loaded: Any, body: bytes) -> InferRequest:
    """Triton's raw binary request (header length 0): the whole body is the data of the model's
    only input, shaped by its configuration; every output is returned as binary data.

    As Triton deduces it: the batch dimension (batching models) is 1; one variable-size
    dimension takes what the body holds (whole elements, rounded down: a body that is not a
    whole number of them is a byte size mismatch); a BYTES input must have exactly one element,
    the whole body (dims [1])."""
    config = loaded.config
    model = config.name
    prefix = request_id_prefix("")
    if len(config.input) != 1:
        raise bad(
            f"{prefix}Raw request must only have 1 input (found 1) to be deduced but got "
            f"{len(config.input)} inputs in '{model}' model configuration"
        )
    spec = config.input[0]
    datatype = to_wire_name(mc.DataType.Name(spec.data_type))
    shape = [1] if config.max_batch_size > 0 else []
    variable = -1
    for d in spec.dims:
        if d < 0:
            if variable >= 0:
                raise bad(
                    f"{prefix}The shape of the raw input '{spec.name}' can not be deduced because "
                    "there are more than one variable-sized dimension"
                )
            variable = len(shape)
        shape.append(int(d))
    fixed = codec.element_count([d for d in shape if d >= 0])
    if datatype == "BYTES":
        if variable >= 0 or fixed != 1:
            raise bad(
                f"{prefix}For BYTE datatype raw input '{spec.name}', the model must have input "
                "shape [1]"
            )
        value: Any = np.array([body], dtype=np.object_).reshape(shape)
    else:
        size = _core.datatype_size(datatype)
        if variable >= 0:
            shape[variable] = len(body) // (fixed * size) if fixed else 0
        expected = fixed * size * (shape[variable] if variable >= 0 else 1)
        if expected != len(body):  # Triton's text names the raw input as its frontend does
            raise input_size_error(config, "", "raw_input", datatype, shape, expected, len(body))
        value = tensor_from_bytes(config, "", spec.name, datatype, shape, body, 0, len(body))
    return InferRequest([(spec.name, value)], None, BINARY_KIND)


# ---- submit ----------------------------------------------------------------------------------


async def submit(
    ctx: HttpContext,
    model: str,
    version: int | None,
    headers: Mapping[str, str],
    request: InferRequest,
    trace: Any,
) -> Sequence[tuple[str, Any]]:
    """Run the request on the server; its output tensors, by name."""
    outputs = list(request.outputs) if request.outputs is not None else None
    if ctx.header_forward is not None:
        forwarded = request_parameters.forwarded_headers(ctx.header_forward, headers.items())
        parameters = request_parameters.with_forwarded(request.kwargs.get("parameters"),
                                                       forwarded)  # fmt: skip
        if parameters:
            request.kwargs["parameters"] = parameters
    tensors = await ctx.server.submit(
        model, request.inputs, outputs, version, request_id=request.request_id,
        trace=trace, **request.kwargs,
    )  # fmt: skip
    if trace is not None:
        trace.capture("INFER_RESPONSE_COMPLETE")
    return tensors  # type: ignore[no-any-return]


# ---- encode ----------------------------------------------------------------------------------


def encode_response(
    shm: SystemSharedMemoryRegistry, model: str, loaded: Any, request: InferRequest, tensors: Sequence[tuple[str, Any]]
) -> Reply:
    """The response: JSON outputs in the header, binary ones after it, shared-memory ones
    written to their regions (Triton's binary tensor data extension)."""
    header: dict[str, Any] = {}
    if request.request_id:
        header["id"] = request.request_id
    header["model_name"] = model
    header["model_version"] = str(loaded.version)
    entries: list[dict[str, Any]] = []
    binaries: list[Any] = []
    wanted = request.outputs
    batched = loaded.config.max_batch_size > 0
    for name, tensor in tensors:
        spec = wanted.get(name) if wanted is not None else None
        kind = spec.kind if spec is not None else request.default_kind
        datatype, shape = tensor.datatype, list(tensor.shape)
        value: Any = tensor
        if spec is not None and spec.classes:
            value = classify(
                tensor.numpy(), datatype, spec.classes, batched, loaded.labels(name)
            )
            datatype, shape = "BYTES", list(value.shape)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if kind == SHM_KIND:
            assert spec is not None
            shm.write_output(spec.region, spec.offset, spec.byte_size, value, output=name)
        elif kind == BINARY_KIND:
            data = raw_view(value)
            entry["parameters"] = {"binary_data_size": len(data)}
            if len(data):
                binaries.append(data)
        else:
            array = value if isinstance(value, np.ndarray) else value.numpy()
            entry["data"] = codec.json_data(array)
        entries.append(entry)
    header["outputs"] = entries
    head = codec.dumps(header)
    if not binaries:
        return Reply(200, head, {"Content-Type": JSON})
    return Reply(
        200,
        b"".join([head, *binaries]),
        {"Content-Type": BINARY, HEADER_LENGTH: str(len(head))},
    )


def raw_view(value: Any) -> Any:
    """The bytes of an output in Triton's layout (BYTES serialized), a view where possible."""
    if isinstance(value, np.ndarray):  # classification results
        return _core.serialize_bytes(value)
    if value.datatype == "BYTES":
        return value.tobytes()
    return memoryview(value.numpy().reshape(-1).view(np.uint8))


async def encode_content(reply: Reply, headers: Mapping[str, str]) -> Reply:
    """The reply body in the content coding the client accepts (``Accept-Encoding``), if any."""
    coding = codec.pick_encoding(headers.get("accept-encoding"))
    if coding is not None:
        if len(reply.body) < OFFLOAD_BYTES:
            reply.body = codec.encode_body(reply.body, coding)
        else:
            reply.body = await asyncio.get_running_loop().run_in_executor(
                None, codec.encode_body, reply.body, coding
            )
        reply.headers["Content-Encoding"] = coding
    return reply
