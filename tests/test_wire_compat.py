"""Wire compatibility of tritonlite's protos with NVIDIA Triton's.

tritonclient ships Triton's generated ``service_pb2`` / ``model_config_pb2``;
they are the source of truth. We check the schemas field by field, round-trip
bytes both ways, and check that both sets of modules coexist in one process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import pytest
from google.protobuf import descriptor_pool, json_format, text_format
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    FileDescriptor,
)
from google.protobuf.message import Message
from tritonlite._proto import (
    POOL,
    grpc_service_pb2,
    grpc_service_pb2_grpc,
    health_pb2,
    health_pb2_grpc,
    model_config_pb2,
)

tc_service = pytest.importorskip("tritonclient.grpc.service_pb2")
tc_config = pytest.importorskip("tritonclient.grpc.model_config_pb2")

PAIRS = [(tc_config, model_config_pb2), (tc_service, grpc_service_pb2)]


# --------------------------------------------------------------- helpers --


def _nested(msg: Descriptor) -> Iterator[Descriptor]:
    for nested in msg.nested_types:
        yield nested
        yield from _nested(nested)


def _all_messages(fd: FileDescriptor) -> list[Descriptor]:
    out = []
    for msg in fd.message_types_by_name.values():
        out.append(msg)
        out.extend(_nested(msg))
    return out


def _all_enums(fd: FileDescriptor) -> list[EnumDescriptor]:
    enums = list(fd.enum_types_by_name.values())
    for msg in _all_messages(fd):
        enums.extend(msg.enum_types)
    return enums


def _triton_schema() -> tuple[set[tuple[str, str]], dict[str, set[str]]]:
    fields: set[tuple[str, str]] = set()
    enums: dict[str, set[str]] = {}
    for mod, _ in PAIRS:
        fields |= {(m.full_name, f.name) for m in _all_messages(mod.DESCRIPTOR) for f in m.fields}
        enums |= {e.full_name: set(e.values_by_name) for e in _all_enums(mod.DESCRIPTOR)}
    return fields, enums


# Round trips only fill what Triton knows, so a deliberate tritonlite-only
# addition is reported by the structural test instead of failing everything.
TRITON_FIELDS, TRITON_ENUM_VALUES = _triton_schema()


def _field_sig(f: FieldDescriptor) -> dict[str, Any]:
    return {
        "number": f.number,
        "type": f.type,
        "repeated": f.is_repeated,
        "message_type": f.message_type.full_name if f.message_type else None,
        "enum_type": f.enum_type.full_name if f.enum_type else None,
        "oneof": f.containing_oneof.name if f.containing_oneof else None,
        "has_presence": f.has_presence,
    }


def _counterpart(cls: type[Message], other_module: Any) -> type[Message]:
    """The class in ``other_module`` with the same (possibly nested) name."""
    names = cls.DESCRIPTOR.full_name.split(".")[1:]  # strip package
    obj: Any = other_module
    for name in names:
        obj = getattr(obj, name)
    return obj


def _reachable_fields(
    desc: Descriptor, acc: set[tuple[str, str]] | None = None
) -> set[tuple[str, str]]:
    """(message full name, field name) for every field reachable from desc."""
    acc = set() if acc is None else acc
    for f in desc.fields:
        key = (desc.full_name, f.name)
        if key in acc:
            continue
        acc.add(key)
        if f.message_type:
            _reachable_fields(f.message_type, acc)
    return acc


class _Filler:
    """Sets every field of a message recursively to deterministic values.

    Values depend only on the schema walk, so filling our class and
    tritonclient's class yields identical data. A oneof can hold one member
    per message, so ``covered`` (shared across calls) records which
    (message, field) pairs were set so far and each oneof picks a member
    whose subtree still has uncovered fields; calling ``fill`` repeatedly
    until ``covered`` stops growing reaches every field of the schema.
    """

    def __init__(self, covered: set[tuple[str, str]]) -> None:
        self.covered = covered
        self.counter = 0

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def scalar(self, f: FieldDescriptor) -> Any:
        n = self._next()
        t = f.type
        if t == FieldDescriptor.TYPE_BOOL:
            return True
        if t == FieldDescriptor.TYPE_ENUM:  # a non-default value when possible
            known = TRITON_ENUM_VALUES[f.enum_type.full_name]
            values = [v for v in f.enum_type.values if v.name in known]
            return values[1 + n % (len(values) - 1)].number if len(values) > 1 else 0
        if t == FieldDescriptor.TYPE_STRING:
            return f"{f.name}-{n}"
        if t == FieldDescriptor.TYPE_BYTES:
            return bytes([n % 256, 0, 255]) + f.name.encode()
        if t == FieldDescriptor.TYPE_FLOAT:
            return n + 0.5  # exactly representable in float32
        if t == FieldDescriptor.TYPE_DOUBLE:
            return n + 0.25
        if t in (
            FieldDescriptor.TYPE_INT32,
            FieldDescriptor.TYPE_SINT32,
            FieldDescriptor.TYPE_SFIXED32,
        ):
            return -(n * 1000)  # negative int32 is a 10-byte sign-extended varint
        if t in (
            FieldDescriptor.TYPE_INT64,
            FieldDescriptor.TYPE_SINT64,
            FieldDescriptor.TYPE_SFIXED64,
        ):
            return -(2**40 + n)
        if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
            return 2**31 + n
        if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
            return 2**63 + n
        raise AssertionError(f"unhandled field type {t} for {f.full_name}")

    def _pick(self, desc: Descriptor, members: list[FieldDescriptor]) -> str:
        members = [f for f in members if (desc.full_name, f.name) in TRITON_FIELDS]
        for f in members:
            if (desc.full_name, f.name) not in self.covered:
                return f.name
        for f in members:
            if (
                f.message_type
                and not _reachable_fields(f.message_type) & TRITON_FIELDS <= self.covered
            ):
                return f.name
        return members[0].name

    def fill(self, msg: Message, path: tuple[str, ...] = ()) -> Message:
        desc = msg.DESCRIPTOR
        if desc.full_name in path:  # guard against recursive schemas
            return msg
        path = (*path, desc.full_name)
        chosen = {o.name: self._pick(desc, list(o.fields)) for o in desc.oneofs}  # once per message
        for f in desc.fields:
            if (desc.full_name, f.name) not in TRITON_FIELDS:
                continue
            if f.containing_oneof and chosen[f.containing_oneof.name] != f.name:
                continue
            self.covered.add((desc.full_name, f.name))
            value = getattr(msg, f.name)
            if f.message_type and f.message_type.GetOptions().map_entry:
                entry = f.message_type
                key_f, val_f = entry.fields_by_name["key"], entry.fields_by_name["value"]
                self.covered |= {(entry.full_name, "key"), (entry.full_name, "value")}
                for _ in range(2):
                    key = self.scalar(key_f)
                    if val_f.message_type:
                        self.fill(value[key], path)
                    else:
                        value[key] = self.scalar(val_f)
            elif f.is_repeated:
                for _ in range(2):
                    if f.message_type:
                        self.fill(value.add(), path)
                    else:
                        value.append(self.scalar(f))
            elif f.message_type:
                value.SetInParent()  # empty sub-messages (e.g. All {}) are still present
                self.fill(value, path)
            else:
                setattr(msg, f.name, self.scalar(f))
        return msg


def _filled_variants(cls: type[Message]) -> list[Message]:
    """Filled instances of cls that together set every reachable field."""
    covered: set[tuple[str, str]] = set()
    target = _reachable_fields(cls.DESCRIPTOR) & TRITON_FIELDS
    variants = []
    while True:
        before = len(covered)
        variants.append(_Filler(covered).fill(cls()))
        if covered >= target:
            return variants
        assert len(covered) > before, f"filler stuck: {sorted(target - covered)}"


def _assert_same(a: Message, b: Message) -> None:
    """a and b (from different pools) carry identical known data."""
    assert a.DESCRIPTOR.full_name == b.DESCRIPTOR.full_name
    assert text_format.MessageToString(a) == text_format.MessageToString(b)
    kw = {"preserving_proto_field_name": True}
    assert json_format.MessageToDict(a, **kw) == json_format.MessageToDict(b, **kw)
    assert a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)


def _round_trip(src: Message, dst_cls: type[Message]) -> Message:
    data = src.SerializeToString()
    dst = dst_cls()
    dst.ParseFromString(data)
    # Text/JSON printing omits unknown fields, so equality also proves that
    # nothing was parsed as unknown; re-serialising must give the same bytes.
    _assert_same(src, dst)
    return dst


def _triton_module(cls: type[Message]) -> Any:
    return tc_service if cls.DESCRIPTOR.file.name == "grpc_service.proto" else tc_config


def _both_ways(ours: Message) -> None:
    theirs_cls = _counterpart(type(ours), _triton_module(type(ours)))
    theirs = _round_trip(ours, theirs_cls)
    _round_trip(theirs, type(ours))


# -------------------------------------------------------------- structure --


def test_ours_live_in_private_pool() -> None:
    for _, ours in PAIRS:
        assert ours.DESCRIPTOR.pool is POOL
        assert ours.DESCRIPTOR.pool is not descriptor_pool.Default()
    assert health_pb2.DESCRIPTOR.pool is POOL


@pytest.mark.parametrize("theirs_mod,ours_mod", PAIRS, ids=["model_config", "grpc_service"])
def test_schema_matches_triton(theirs_mod: Any, ours_mod: Any) -> None:
    theirs_fd, ours_fd = theirs_mod.DESCRIPTOR, ours_mod.DESCRIPTOR
    assert ours_fd.name == theirs_fd.name
    assert ours_fd.package == theirs_fd.package == "inference"
    assert [d.name for d in ours_fd.dependencies] == [d.name for d in theirs_fd.dependencies]

    problems: list[str] = []
    for t_msg in _all_messages(theirs_fd):
        try:
            o_msg = POOL.FindMessageTypeByName(t_msg.full_name)
        except KeyError:
            problems.append(f"missing message {t_msg.full_name}")
            continue
        if o_msg.GetOptions().map_entry != t_msg.GetOptions().map_entry:
            problems.append(f"{t_msg.full_name}: map_entry differs")
        missing_oneofs = set(t_msg.oneofs_by_name) - set(o_msg.oneofs_by_name)
        if missing_oneofs:
            problems.append(f"{t_msg.full_name}: missing oneofs {sorted(missing_oneofs)}")
        for t_f in t_msg.fields:
            o_f = o_msg.fields_by_name.get(t_f.name)
            if o_f is None:
                problems.append(f"missing field {t_f.full_name}")
            elif _field_sig(o_f) != _field_sig(t_f):
                problems.append(
                    f"{t_f.full_name}: ours {_field_sig(o_f)} != theirs {_field_sig(t_f)}"
                )
        # Declaration order drives text_format output order; keep it identical.
        if [f.name for f in o_msg.fields if f.name in t_msg.fields_by_name] != [
            f.name for f in t_msg.fields
        ]:
            problems.append(f"{t_msg.full_name}: field declaration order differs")
        extra = set(o_msg.fields_by_name) - set(t_msg.fields_by_name)
        if extra:
            warnings.warn(
                f"tritonlite-only fields in {t_msg.full_name}: {sorted(extra)}", stacklevel=1
            )

    for t_enum in _all_enums(theirs_fd):
        try:
            o_enum = POOL.FindEnumTypeByName(t_enum.full_name)
        except KeyError:
            problems.append(f"missing enum {t_enum.full_name}")
            continue
        t_vals = {v.name: v.number for v in t_enum.values}
        o_vals = {v.name: v.number for v in o_enum.values}
        if {k: o_vals.get(k) for k in t_vals} != t_vals:
            problems.append(f"enum {t_enum.full_name}: ours {o_vals} != theirs {t_vals}")
        if set(o_vals) - set(t_vals):
            warnings.warn(
                f"tritonlite-only values in {t_enum.full_name}: {set(o_vals) - set(t_vals)}",
                stacklevel=1,
            )

    their_names = {m.full_name for m in _all_messages(theirs_fd)} | {
        e.full_name for e in _all_enums(theirs_fd)
    }
    our_names = {m.full_name for m in _all_messages(ours_fd)} | {
        e.full_name for e in _all_enums(ours_fd)
    }
    if our_names - their_names:
        warnings.warn(
            f"tritonlite-only types in {ours_fd.name}: {sorted(our_names - their_names)}",
            stacklevel=1,
        )

    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("theirs_mod,ours_mod", PAIRS, ids=["model_config", "grpc_service"])
def test_descriptor_byte_identical(theirs_mod: Any, ours_mod: Any) -> None:
    """Stronger than wire compatibility: the whole FileDescriptorProto (names,
    declaration order included) equals Triton's. Only expected to hold against
    the Triton release our protos track, so a mismatch skips; the structural
    test above is the real gate."""
    if ours_mod.DESCRIPTOR.serialized_pb != theirs_mod.DESCRIPTOR.serialized_pb:
        pytest.skip("descriptor differs from this tritonclient's; see test_schema_matches_triton")


def test_service_matches_triton() -> None:
    theirs = tc_service.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    ours = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert ours.full_name == theirs.full_name == "inference.GRPCInferenceService"

    def sig(svc: Any) -> dict[str, tuple[str, str, bool, bool]]:
        return {
            m.name: (
                m.input_type.full_name,
                m.output_type.full_name,
                m.client_streaming,
                m.server_streaming,
            )
            for m in svc.methods
        }

    t_sig, o_sig = sig(theirs), sig(ours)
    assert {k: o_sig.get(k) for k in t_sig} == t_sig
    assert [m.name for m in ours.methods if m.name in t_sig] == [m.name for m in theirs.methods]
    if set(o_sig) - set(t_sig):
        warnings.warn(f"tritonlite-only RPCs: {sorted(set(o_sig) - set(t_sig))}", stacklevel=1)


def test_health_proto_is_grpc_health_v1() -> None:
    fd = health_pb2.DESCRIPTOR
    assert fd.package == "grpc.health.v1"
    req, resp = health_pb2.HealthCheckRequest.DESCRIPTOR, health_pb2.HealthCheckResponse.DESCRIPTOR
    assert req.full_name == "grpc.health.v1.HealthCheckRequest"
    assert [(f.name, f.number, f.type) for f in req.fields] == [
        ("service", 1, FieldDescriptor.TYPE_STRING)
    ]
    (status,) = resp.fields
    assert (status.name, status.number) == ("status", 1)
    assert status.enum_type.full_name == "grpc.health.v1.HealthCheckResponse.ServingStatus"
    assert {v.name: v.number for v in status.enum_type.values} == {
        "UNKNOWN": 0,
        "SERVING": 1,
        "NOT_SERVING": 2,
        "SERVICE_UNKNOWN": 3,
    }
    svc = fd.services_by_name["Health"]
    assert svc.full_name == "grpc.health.v1.Health"
    methods = {
        m.name: (m.input_type.name, m.output_type.name, m.client_streaming, m.server_streaming)
        for m in svc.methods
    }
    assert methods == {
        "Check": ("HealthCheckRequest", "HealthCheckResponse", False, False),
        "Watch": ("HealthCheckRequest", "HealthCheckResponse", False, True),
    }


# ------------------------------------------------------------ round trips --


def _all_top_level() -> list[type[Message]]:
    return [getattr(mod, name) for _, mod in PAIRS for name in mod.DESCRIPTOR.message_types_by_name]


@pytest.mark.parametrize("cls", _all_top_level(), ids=lambda c: c.DESCRIPTOR.name)
def test_filled_round_trip(cls: type[Message]) -> None:
    """Every field of every reachable sub-message, both directions."""
    ours = _filled_variants(cls)
    # Theirs, filled independently by the same deterministic walk.
    theirs = _filled_variants(_counterpart(cls, _triton_module(cls)))
    assert len(ours) == len(theirs)
    for o, t in zip(ours, theirs, strict=True):
        _both_ways(o)
        _assert_same(o, t)


def test_model_config_every_submessage_set() -> None:
    """ModelConfig: explicit check that the fill reaches all sub-messages."""
    variants = _filled_variants(model_config_pb2.ModelConfig)
    assert len(variants) >= 3  # at least one per scheduling_choice member
    present: set[str] = set()

    def walk(msg: Message) -> None:
        present.add(msg.DESCRIPTOR.full_name)
        for f, v in msg.ListFields():
            if not f.message_type:
                continue
            if f.message_type.GetOptions().map_entry:
                subs = list(v.values())
            else:
                subs = list(v) if f.is_repeated else [v]
            for sub in subs:
                if isinstance(sub, Message):
                    walk(sub)

    for cfg in variants:
        walk(cfg)
        _both_ways(cfg)
    expected = {
        m.full_name for m in _all_messages(tc_config.DESCRIPTOR) if not m.GetOptions().map_entry
    }
    assert expected <= present, sorted(expected - present)


def _params(container: Any) -> None:
    container["b"].bool_param = True
    container["i"].int64_param = -(2**62)
    container["s"].string_param = "héllo"
    container["d"].double_param = 3.5
    container["u"].uint64_param = 2**64 - 1


def test_model_infer_request_round_trip() -> None:
    pb = grpc_service_pb2
    req = pb.ModelInferRequest(model_name="simple", model_version="1", id="req-1")
    _params(req.parameters)
    typed: list[tuple[str, str, list[Any]]] = [
        ("BOOL", "bool_contents", [True, False]),
        ("INT32", "int_contents", [-1, 2**31 - 1]),
        ("INT64", "int64_contents", [-(2**63), 2**63 - 1]),
        ("UINT32", "uint_contents", [0, 2**32 - 1]),
        ("UINT64", "uint64_contents", [1, 2**64 - 1]),
        ("FP32", "fp32_contents", [1.5, -0.25]),
        ("FP64", "fp64_contents", [1e300, -2.5]),
        ("BYTES", "bytes_contents", [b"", b"\x00\xff"]),
    ]
    for i, (dtype, field, values) in enumerate(typed):
        inp = req.inputs.add(name=f"IN{i}", datatype=dtype, shape=[1, len(values)])
        _params(inp.parameters)
        getattr(inp.contents, field).extend(values)
    # Raw contents use their own inputs (Triton forbids mixing per request,
    # but the wire format does not care).
    req.inputs.add(name="RAW0", datatype="FP16", shape=[2])
    req.raw_input_contents.append(b"\x00\x3c\x00\x40")
    out = req.outputs.add(name="OUT0")
    _params(out.parameters)
    out.parameters["binary_data"].bool_param = True
    req.outputs.add(name="OUT1")

    _both_ways(req)
    theirs = tc_service.ModelInferRequest.FromString(req.SerializeToString())
    assert theirs.parameters["u"].WhichOneof("parameter_choice") == "uint64_param"
    assert list(theirs.inputs[2].contents.int64_contents) == [-(2**63), 2**63 - 1]
    assert theirs.raw_input_contents == [b"\x00\x3c\x00\x40"]


def test_model_infer_response_round_trip() -> None:
    pb = grpc_service_pb2
    resp = pb.ModelInferResponse(model_name="simple", model_version="1", id="req-1")
    _params(resp.parameters)
    o = resp.outputs.add(name="OUTPUT0", datatype="INT32", shape=[1, 16])
    _params(o.parameters)
    resp.raw_output_contents.append(bytes(range(64)))
    t = resp.outputs.add(name="OUTPUT1", datatype="BYTES", shape=[2])
    t.contents.bytes_contents.extend([b"a", b"bc"])
    _both_ways(resp)
    _both_ways(pb.ModelStreamInferResponse(error_message="", infer_response=resp))
    _both_ways(pb.ModelStreamInferResponse(error_message="boom"))


def test_model_statistics_round_trip() -> None:
    pb = grpc_service_pb2
    resp = pb.ModelStatisticsResponse()
    st = resp.model_stats.add(name="simple", version="1", last_inference=1_700_000_000_000)
    st.inference_count, st.execution_count = 10, 4
    for i, f in enumerate(pb.InferStatistics.DESCRIPTOR.fields):
        getattr(st.inference_stats, f.name).MergeFrom(
            pb.StatisticDuration(count=i + 1, ns=(i + 1) * 1000)
        )
    b = st.batch_stats.add(batch_size=8)
    b.compute_infer.count, b.compute_infer.ns = 4, 99
    st.memory_usage.add(type="GPU", id=0, byte_size=2**33)
    st.response_stats["0"].success.ns = 5
    st.response_stats["1"].empty_response.count = 2
    _both_ways(resp)


def test_repository_index_round_trip() -> None:
    resp = grpc_service_pb2.RepositoryIndexResponse()
    resp.models.add(name="simple", version="1", state="READY")
    resp.models.add(name="broken", version="2", state="UNAVAILABLE", reason="load failed")
    _both_ways(resp)
    load = grpc_service_pb2.RepositoryModelLoadRequest(model_name="simple")
    load.parameters["config"].string_param = '{"max_batch_size": 4}'
    load.parameters["file:1/model.onnx"].bytes_param = b"\x08\x07"
    _both_ways(load)


# ------------------------------------------------------------ text format --

SIMPLE_PBTXT = """
name: "simple"
platform: "tensorflow_graphdef"
max_batch_size: 8
version_policy: { latest: { num_versions: 2 } }
input [
  {
    name: "INPUT0"
    data_type: TYPE_INT32
    dims: [ 16 ]
  },
  {
    name: "INPUT1"
    data_type: TYPE_INT32
    dims: [ 16 ]
  }
]
output [
  {
    name: "OUTPUT0"
    data_type: TYPE_INT32
    dims: [ 16 ]
  },
  {
    name: "OUTPUT1"
    data_type: TYPE_INT32
    dims: [ 16 ]
    label_filename: "labels.txt"
  }
]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 100
  priority_levels: 2
  default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 500 }
  priority_queue_policy { key: 1 value: { max_queue_size: 16 } }
}
instance_group [
  { count: 2, kind: KIND_GPU, gpus: [ 0, 1 ] },
  { kind: KIND_CPU }
]
optimization { cuda { graphs: true } input_pinned_memory { enable: false } }
parameters {
  key: "EXECUTION_ENV_PATH"
  value: { string_value: "$$TRITON_MODEL_DIRECTORY/env.tar.gz" }
}
model_warmup [
  {
    name: "zeros"
    batch_size: 1
    inputs { key: "INPUT0" value: { data_type: TYPE_INT32 dims: [ 16 ] zero_data: true } }
  }
]
"""

SEQUENCE_PBTXT = """
name: "seq"
backend: "onnxruntime"
max_batch_size: 4
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  oldest { max_candidate_sequences: 4 }
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
  state [
    {
      input_name: "INPUT_STATE"
      output_name: "OUTPUT_STATE"
      data_type: TYPE_FP32
      dims: [ -1 ]
      initial_state { data_type: TYPE_FP32 dims: [ 1 ] zero_data: true name: "init" }
    }
  ]
}
"""

ENSEMBLE_PBTXT = """
name: "ens"
platform: "ensemble"
ensemble_scheduling {
  step [
    {
      model_name: "preprocess"
      model_version: -1
      input_map { key: "RAW" value: "IN" }
      output_map { key: "OUT" value: "prep_out" }
    }
  ]
}
"""


@pytest.mark.parametrize(
    "pbtxt", [SIMPLE_PBTXT, SEQUENCE_PBTXT, ENSEMBLE_PBTXT], ids=["simple", "sequence", "ensemble"]
)
def test_text_format_config(pbtxt: str) -> None:
    ours = text_format.Parse(pbtxt, model_config_pb2.ModelConfig())
    theirs = text_format.Parse(pbtxt, tc_config.ModelConfig())
    _assert_same(ours, theirs)
    _both_ways(ours)
    # Print/parse and JSON stay lossless with the private pool.
    assert (
        text_format.Parse(text_format.MessageToString(ours), model_config_pb2.ModelConfig()) == ours
    )
    assert (
        json_format.Parse(json_format.MessageToJson(ours), model_config_pb2.ModelConfig()) == ours
    )


def test_simple_config_values() -> None:
    cfg = text_format.Parse(SIMPLE_PBTXT, model_config_pb2.ModelConfig())
    assert cfg.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert (
        cfg.dynamic_batching.default_queue_policy.timeout_action
        == model_config_pb2.ModelQueuePolicy.DELAY
    )
    assert cfg.dynamic_batching.priority_queue_policy[1].max_queue_size == 16
    assert [g.kind for g in cfg.instance_group] == [
        model_config_pb2.ModelInstanceGroup.KIND_GPU,
        model_config_pb2.ModelInstanceGroup.KIND_CPU,
    ]
    assert cfg.input[0].data_type == model_config_pb2.TYPE_INT32
    assert cfg.version_policy.WhichOneof("policy_choice") == "latest"


# ------------------------------------------------------------ coexistence --

_COEXIST = textwrap.dedent(
    """
    import sys
    order = sys.argv[1].split(",")
    mods = {}
    for name in order:
        if name == "triton":
            import tritonclient.grpc  # registers inference protos in the default pool
            from tritonclient.grpc import model_config_pb2, service_pb2
            mods["triton"] = (model_config_pb2, service_pb2)
        else:
            from tritonlite._proto import grpc_service_pb2, grpc_service_pb2_grpc, model_config_pb2
            from tritonlite._proto import health_pb2, health_pb2_grpc
            mods["ours"] = (model_config_pb2, grpc_service_pb2)
    from google.protobuf import descriptor_pool
    (tc, ts), (oc, os_) = mods["triton"], mods["ours"]
    default = descriptor_pool.Default()
    assert default.FindFileByName("model_config.proto") is tc.DESCRIPTOR
    assert default.FindMessageTypeByName("inference.ModelConfig") is tc.ModelConfig.DESCRIPTOR
    req_desc = default.FindMessageTypeByName("inference.ModelInferRequest")
    assert req_desc is ts.ModelInferRequest.DESCRIPTOR
    assert oc.DESCRIPTOR.pool is not default
    try:
        default.FindMessageTypeByName("grpc.health.v1.HealthCheckRequest")
        raise AssertionError("our health.proto leaked into the default pool")
    except KeyError:
        pass
    r = os_.ModelInferRequest(model_name="m")
    r.inputs.add(name="x", datatype="FP32", shape=[1]).contents.fp32_contents.append(1.0)
    t = ts.ModelInferRequest.FromString(r.SerializeToString())
    assert t.inputs[0].contents.fp32_contents[0] == 1.0
    assert os_.ModelInferRequest.FromString(t.SerializeToString()) == r
    c = oc.ModelConfig(name="m")
    assert tc.ModelConfig.FromString(c.SerializeToString()).name == "m"
    from google.protobuf.internal import api_implementation
    print("ok", api_implementation.Type())
    """
)


@pytest.mark.parametrize("impl", ["default", "python"])
@pytest.mark.parametrize("order", ["triton,ours", "ours,triton"])
def test_coexist_in_one_process(order: str, impl: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    if impl == "python":
        env["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
    proc = subprocess.run(
        [sys.executable, "-c", _COEXIST, order],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok")
    if impl == "python":
        assert "python" in proc.stdout


# ------------------------------------------------------------------ gRPC --


class _Servicer(grpc_service_pb2_grpc.GRPCInferenceServiceServicer):
    def ServerLive(self, request: Any, context: Any) -> Any:
        return grpc_service_pb2.ServerLiveResponse(live=True)

    def ModelInfer(self, request: Any, context: Any) -> Any:
        resp = grpc_service_pb2.ModelInferResponse(
            model_name=request.model_name, model_version="1", id=request.id
        )
        for inp, raw in zip(request.inputs, request.raw_input_contents, strict=True):
            resp.outputs.add(
                name=inp.name.replace("INPUT", "OUTPUT"), datatype=inp.datatype, shape=inp.shape
            )
            resp.raw_output_contents.append(raw)
        return resp

    def ModelConfig(self, request: Any, context: Any) -> Any:
        return grpc_service_pb2.ModelConfigResponse(
            config=text_format.Parse(SIMPLE_PBTXT, model_config_pb2.ModelConfig())
        )


class _Health(health_pb2_grpc.HealthServicer):
    def Check(self, request: Any, context: Any) -> Any:
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


def test_grpc_stubs_talk_to_tritonclient() -> None:
    grpc = pytest.importorskip("grpc")
    np = pytest.importorskip("numpy")
    import tritonclient.grpc as tgrpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(_Servicer(), server)
    health_pb2_grpc.add_HealthServicer_to_server(_Health(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        client = tgrpc.InferenceServerClient(f"127.0.0.1:{port}")
        assert client.is_server_live()
        data = np.arange(16, dtype=np.int32).reshape(1, 16)
        inp = tgrpc.InferInput("INPUT0", [1, 16], "INT32")
        inp.set_data_from_numpy(data)
        result = client.infer("simple", [inp], request_id="r1")
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)
        cfg = client.get_model_config("simple", as_json=True)
        assert cfg["config"]["max_batch_size"] == 8
        client.close()

        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            assert (
                stub.Check(health_pb2.HealthCheckRequest()).status
                == health_pb2.HealthCheckResponse.SERVING
            )
            ours = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
            assert ours.ServerLive(grpc_service_pb2.ServerLiveRequest()).live
    finally:
        server.stop(None)
