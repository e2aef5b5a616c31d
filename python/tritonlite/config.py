"""Model configuration: the one source of truth for a model's ``ModelConfig``.

This module owns everything between a model directory and a finished, validated
``inference.ModelConfig`` protobuf (wire-identical to Triton's):

- reading ``config.pbtxt`` (protobuf text format) or a JSON override from the load API,
- resolving the backend/platform pair and the default model filename the way Triton's
  server-side auto-complete does (also when backend auto-complete is disabled),
- backend auto-complete: inputs, outputs and max_batch_size from an ONNX file, and a hook
  for python models,
- the defaults Triton fills (version policy, instance groups, preferred batch sizes,
  sequence idle time, pinned memory),
- validation with Triton 2.51's error texts,
- version selection under the version policy,
- the JSON form Triton serves at ``/v2/models/<model>/config``.

The rest of tritonlite reads a loaded config through the helpers here (``input_specs``,
``output_specs``, ``has_dynamic_batching``, ``config_to_json``) instead of re-deriving
defaults.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from google.protobuf import descriptor as _descriptor
from google.protobuf import json_format, text_format

from . import datatypes
from .config_support import check_config_support
from ._proto import model_config_pb2 as _pb
from .errors import INVALID_ARG, TritonError

__all__ = [
    "ModelConfig",
    "TensorSpec",
    "config_to_json",
    "has_dynamic_batching",
    "input_specs",
    "load_model_config",
    "output_specs",
    "parse_config_text",
    "select_versions",
    "version_dirs",
]

ModelConfig: TypeAlias = _pb.ModelConfig

_log = logging.getLogger("tritonlite.config")

CONFIG_FILENAME = "config.pbtxt"

# Backend, platform and default file names, as Triton spells them (core/src/constants.h).
_ENSEMBLE_PLATFORM = "ensemble"
_ONNX_BACKEND, _ONNX_PLATFORM, _ONNX_FILE = "onnxruntime", "onnxruntime_onnx", "model.onnx"
_TORCH_BACKEND, _TORCH_PLATFORM, _TORCH_FILE = "pytorch", "pytorch_libtorch", "model.pt"
_PYTHON_BACKEND, _PYTHON_FILE = "python", "model.py"
_TF_BACKEND, _TF_GRAPHDEF_PLATFORM, _TF_GRAPHDEF_FILE = (
    "tensorflow",
    "tensorflow_graphdef",
    "model.graphdef",
)
_TF_SAVEDMODEL_PLATFORM, _TF_SAVEDMODEL_FILE = "tensorflow_savedmodel", "model.savedmodel"
_TRT_BACKEND, _TRT_PLATFORM, _TRT_FILE = "tensorrt", "tensorrt_plan", "model.plan"
_OPENVINO_BACKEND, _OPENVINO_FILE = "openvino", "model.xml"
_KNOWN_MODEL_FILES = frozenset(
    {
        _ONNX_FILE,
        _TORCH_FILE,
        _PYTHON_FILE,
        _TF_GRAPHDEF_FILE,
        _TF_SAVEDMODEL_FILE,
        _TRT_FILE,
        _OPENVINO_FILE,
    }
)

# Backends whose platform must agree with their backend (Triton's GetBackendType).
_BACKEND_KIND = {
    _TF_BACKEND: "tensorflow",
    _TRT_BACKEND: "tensorrt",
    _ONNX_BACKEND: "onnxruntime",
    _TORCH_BACKEND: "pytorch",
}
_PLATFORM_KIND = {
    _TF_GRAPHDEF_PLATFORM: "tensorflow",
    _TF_SAVEDMODEL_PLATFORM: "tensorflow",
    _TRT_PLATFORM: "tensorrt",
    _ONNX_PLATFORM: "onnxruntime",
    _TORCH_PLATFORM: "pytorch",
}

_WILDCARD_DIM = -1
_SEQUENCE_IDLE_DEFAULT_US = 1_000_000
_DEFAULT_MAX_BATCH_SIZE = 4  # tritonserver's --backend-config default-max-batch-size
_MIN_COMPUTE_CAPABILITY = 6.0
_VERSION_DIR_RE = re.compile(r"0|[1-9][0-9]*")

# ONNX TensorProto element types (onnx.TensorProto.DataType) -> config data type.
_ONNX_ELEM_TYPES = {
    1: "TYPE_FP32",
    2: "TYPE_UINT8",
    3: "TYPE_INT8",
    4: "TYPE_UINT16",
    5: "TYPE_INT16",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    8: "TYPE_STRING",
    9: "TYPE_BOOL",
    10: "TYPE_FP16",
    11: "TYPE_FP64",
    12: "TYPE_UINT32",
    13: "TYPE_UINT64",
    16: "TYPE_BF16",
}
# onnxruntime's NodeArg.type strings -> config data type (fallback when onnx is absent).
_ORT_TYPES = {
    "tensor(float)": "TYPE_FP32",
    "tensor(uint8)": "TYPE_UINT8",
    "tensor(int8)": "TYPE_INT8",
    "tensor(uint16)": "TYPE_UINT16",
    "tensor(int16)": "TYPE_INT16",
    "tensor(int32)": "TYPE_INT32",
    "tensor(int64)": "TYPE_INT64",
    "tensor(string)": "TYPE_STRING",
    "tensor(bool)": "TYPE_BOOL",
    "tensor(float16)": "TYPE_FP16",
    "tensor(double)": "TYPE_FP64",
    "tensor(uint32)": "TYPE_UINT32",
    "tensor(uint64)": "TYPE_UINT64",
    "tensor(bfloat16)": "TYPE_BF16",
}

PythonAutoComplete = Callable[[ModelConfig], ModelConfig]


@dataclass(frozen=True)
class TensorSpec:
    """One configured input or output, in the terms the server and backends need.

    ``datatype`` is the wire name ("INT32", "BYTES"); ``dims`` exclude the batch dimension
    when the model batches (``max_batch_size > 0``), -1 marks a variable dimension;
    ``reshape`` is the shape the backend sees, or None when the config has no reshape.
    """

    name: str
    datatype: str
    dims: list[int]
    optional: bool = False
    reshape: list[int] | None = None


# --------------------------------------------------------------------------- public API


def parse_config_text(text: str, model_name: str, source: str = CONFIG_FILENAME) -> ModelConfig:
    """Parse protobuf text format into a ModelConfig.

    A syntax error raises TritonError(INVALID_ARG) naming the model, ``source`` and the
    line:column of the problem.
    """
    config = ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise TritonError(
            f"failed to read text proto from {source} for model '{model_name}': "
            + _describe_text_error(e),
            INVALID_ARG,
        ) from None
    except ValueError as e:  # protobuf raises it for an enum number out of int32 range
        raise TritonError(
            f"failed to read text proto from {source} for model '{model_name}': {e}",
            INVALID_ARG,
        ) from None
    return config


def config_file(model_dir: Path, config_name: str = "") -> Path:
    """The config file a model directory is read from: ``configs/<config_name>.pbtxt`` when
    ``config_name`` (Triton's ``--model-config-name``) is set and that file exists, else
    ``config.pbtxt``."""
    if config_name:
        custom = model_dir / "configs" / f"{config_name}.pbtxt"
        if custom.is_file():
            return custom
    return model_dir / CONFIG_FILENAME


def check_config_name(config_name: str) -> None:
    """Triton's rule for --model-config-name (no spaces), and a plain file name."""
    if any(c.isspace() for c in config_name) or "/" in config_name or config_name in (".", ".."):
        raise TritonError(
            f"--model-config-name '{config_name}' must be a file name without spaces",
            INVALID_ARG,
        )


def load_model_config(
    model_dir: Path | str,
    *,
    model_name: str | None = None,
    config_name: str = "",
    auto_complete: bool = True,
    override: str | None = None,
    backend_hints: Mapping[str, Mapping[str, str]] | None = None,
    python_auto_complete: PythonAutoComplete | None = None,
    gpus: Sequence[int] = (),
) -> ModelConfig:
    """Read, complete, fill in and validate the config of the model in ``model_dir``.

    - ``model_name`` defaults to the directory name; a config ``name`` that differs is an
      error, as in Triton.
    - ``config_name`` (``--model-config-name``) reads ``configs/<config_name>.pbtxt`` instead of
      ``config.pbtxt`` where the model has it.
    - ``override`` is a JSON ModelConfig (the load API's ``config`` parameter); it replaces
      config.pbtxt entirely. Enum names match case-insensitively, as in Triton.
    - ``auto_complete`` enables backend auto-complete (ONNX inputs/outputs/max_batch_size;
      ``python_auto_complete`` for python models). Without it config.pbtxt must exist.
      Backend/platform/default_model_filename are resolved either way, as Triton does.
    - ``backend_hints`` are Triton ``--backend-config`` settings per backend name (``""``
      applies to every backend); ``default-max-batch-size`` (default 4) is used.
    - ``gpus`` are the device ids available; with none, KIND_AUTO groups become KIND_CPU
      and KIND_GPU groups are an error.

    Raises TritonError(INVALID_ARG) with Triton's message for anything invalid.
    """
    model_dir = Path(model_dir)
    name = model_name or model_dir.name
    config = _read_config(model_dir, name, override, auto_complete, config_name)
    if config.name and config.name != name:
        raise TritonError(
            f"unexpected directory name '{name}' for model '{config.name}', "
            "directory name must equal model name",
            INVALID_ARG,
        )
    config.name = name

    _autofill_backend_fields(config, model_dir)
    _normalize(config)
    _validate_model(config)
    if auto_complete:
        if config.backend == _ONNX_BACKEND:
            _onnx_auto_complete(config, model_dir, backend_hints)
        elif config.backend == _PYTHON_BACKEND and python_auto_complete is not None:
            _merge_auto_completed(config, python_auto_complete(_copy(config)))
        _normalize(config)
        _validate_model(config)
    _normalize_instance_groups(config, gpus)
    _validate_instance_groups(config, gpus)
    _validate_io(config)
    check_config_support(config)  # what tritonlite refuses or warns about, by field
    return config


def version_dirs(model_dir: Path | str) -> dict[int, Path]:
    """The version subdirectories of ``model_dir``, by version, in ascending order.

    Only plain decimal names count ("1", "20"); Triton ignores names with leading zeros
    ("03") and anything that is not a number.
    """
    found: dict[int, Path] = {}
    root = Path(model_dir)
    if not root.is_dir():
        return found
    for child in root.iterdir():
        if child.is_dir() and _VERSION_DIR_RE.fullmatch(child.name):
            found[int(child.name)] = child
    return dict(sorted(found.items()))


def select_versions(config: ModelConfig, available: Iterable[int]) -> list[int]:
    """The versions to serve under ``config.version_policy``, ascending.

    latest{n}: the n highest; all: every one; specific{versions}: those listed that exist
    (each listed one that is missing is logged with Triton's text, as Triton does). No
    version left raises TritonError(INVALID_ARG) with Triton's message.
    """
    have = sorted(set(available))
    policy = config.version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        chosen = have
    elif which == "specific":
        chosen = []
        for version in sorted(set(policy.specific.versions)):
            if version in have:
                chosen.append(version)
            else:
                _log.error(
                    "version %d is specified for model '%s', but the version directory "
                    "is not present",
                    version,
                    config.name,
                )
    else:
        n = policy.latest.num_versions if which == "latest" else 1
        chosen = sorted(have[-n:]) if n > 0 else []
    if not chosen:
        raise TritonError(
            "at least one version must be available under the version policy of model "
            f"'{config.name}'",
            INVALID_ARG,
        )
    return chosen


def config_to_json(config: ModelConfig) -> dict[str, Any]:
    """The config as Triton's HTTP ``/v2/models/<m>/config`` returns it.

    Proto field names, every field without presence printed (Triton's
    always_print_primitive_fields), fields in declaration order, and the same 64-bit
    fields Triton turns from strings back into numbers (others stay strings, as there).
    """
    if config.ByteSize() == 0:
        return {}
    raw = json_format.MessageToDict(
        config,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    _fix_int64_fields(raw)
    return _ordered(raw, config.DESCRIPTOR)


def input_specs(config: ModelConfig) -> list[TensorSpec]:
    """The configured inputs, in config order."""
    return [
        TensorSpec(
            name=io.name,
            datatype=_wire_datatype(io.data_type),
            dims=list(io.dims),
            optional=io.optional,
            reshape=list(io.reshape.shape) if io.HasField("reshape") else None,
        )
        for io in config.input
    ]


def output_specs(config: ModelConfig) -> list[TensorSpec]:
    """The configured outputs, in config order."""
    return [
        TensorSpec(
            name=io.name,
            datatype=_wire_datatype(io.data_type),
            dims=list(io.dims),
            reshape=list(io.reshape.shape) if io.HasField("reshape") else None,
        )
        for io in config.output
    ]


def has_dynamic_batching(config: ModelConfig) -> bool:
    """Whether the config enables the dynamic batcher (``dynamic_batching`` present)."""
    return bool(config.HasField("dynamic_batching"))


# --------------------------------------------------------------------------- reading


def _describe_text_error(e: text_format.ParseError) -> str:
    line, column = e.GetLine(), e.GetColumn()
    detail = re.sub(r"^\d+:\d+ : ", "", str(e))
    if line is not None and column is not None:
        detail = f"{line}:{column}: {detail}"
    enum = re.search(r'Enum type "([\w.]+)" has no value named', detail)
    if enum:
        detail += f" (valid values: {', '.join(_enum_names(enum.group(1)))})"
    return detail


def _enum_names(full_name: str) -> list[str]:
    try:
        enum = _pb.DESCRIPTOR.pool.FindEnumTypeByName(full_name)
    except KeyError:
        return []
    return [v.name for v in enum.values if not v.name.endswith("_INVALID")]


def _read_config(
    model_dir: Path, name: str, override: str | None, auto_complete: bool, config_name: str = ""
) -> ModelConfig:
    if override is not None:
        return _parse_override(override, name)
    path = config_file(model_dir, config_name)
    if path.is_file():
        return parse_config_text(path.read_text(), name, str(path))
    if auto_complete:
        return ModelConfig()
    raise TritonError(
        f"failed to open text file for read {path}: No such file or directory",
        INVALID_ARG,
    )


def check_override(override: str, name: str) -> None:
    """Raise TritonError (INVALID_ARG) when a load API ``config`` override is not a JSON
    ModelConfig for model ``name``."""
    config = _parse_override(override, name)
    if config.name and config.name != name:
        raise TritonError(
            f"unexpected directory name '{name}' for model '{config.name}', "
            "directory name must equal model name",
            INVALID_ARG,
        )


def _parse_override(override: str, name: str) -> ModelConfig:
    prefix = f"Invalid config override for model '{name}': "
    try:
        document = json.loads(override)
    except json.JSONDecodeError as e:
        raise TritonError(prefix + str(e), INVALID_ARG) from None
    if not isinstance(document, dict):
        raise TritonError(prefix + "expected a JSON object", INVALID_ARG)
    _upper_case_enums(document, ModelConfig.DESCRIPTOR)
    config = ModelConfig()
    try:
        json_format.ParseDict(document, config)
    except json_format.ParseError as e:
        message = str(e)
        enum = re.search(r"Invalid enum value \S+ for enum type ([\w.]+)", message)
        if enum:
            message += f" (valid values: {', '.join(_enum_names(enum.group(1)))})"
        raise TritonError(prefix + message, INVALID_ARG) from None
    return config


def _upper_case_enums(document: dict[str, Any], desc: _descriptor.Descriptor) -> None:
    """Triton parses overrides with case_insensitive_enum_parsing; Python's parser cannot."""
    for key, value in document.items():
        field = desc.fields_by_name.get(key) or _field_by_json_name(desc, key)
        if field is None:
            continue
        if field.enum_type is not None:
            values = value if isinstance(value, list) else [value]
            fixed = [
                v.upper()
                if isinstance(v, str) and v.upper() in field.enum_type.values_by_name
                else v
                for v in values
            ]
            document[key] = fixed if isinstance(value, list) else fixed[0]
        elif field.message_type is not None:
            msg = field.message_type
            if msg.GetOptions().map_entry:
                value_field = msg.fields_by_name["value"]
                if value_field.message_type is not None and isinstance(value, dict):
                    for item in value.values():
                        if isinstance(item, dict):
                            _upper_case_enums(item, value_field.message_type)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, dict):
                        _upper_case_enums(item, msg)
            elif isinstance(value, dict):
                _upper_case_enums(value, msg)


def _field_by_json_name(
    desc: _descriptor.Descriptor, key: str
) -> _descriptor.FieldDescriptor | None:
    for field in desc.fields:
        if field.json_name == key:
            return field
    return None


def _copy(config: ModelConfig) -> ModelConfig:
    clone = ModelConfig()
    clone.CopyFrom(config)
    return clone


# --------------------------------------------------------------------------- completion


def _inspected_version_dir(model_dir: Path) -> tuple[Path | None, set[str]]:
    """The version directory whose files decide the backend, and its entries.

    Triton looks at one version directory; we take the highest one holding a known model
    file, else the lowest one.
    """
    versions = version_dirs(model_dir)
    for version in sorted(versions, reverse=True):
        entries = {p.name for p in versions[version].iterdir()}
        if entries & _KNOWN_MODEL_FILES:
            return versions[version], entries
    if versions:
        first = versions[min(versions)]
        return first, {p.name for p in first.iterdir()}
    return None, set()


def _autofill_backend_fields(config: ModelConfig, model_dir: Path) -> None:
    """Triton's AutoCompleteBackendFields: backend, platform, default_model_filename."""
    version_path, content = _inspected_version_dir(model_dir)
    has_version = version_path is not None

    def present(filename: str, *, want_dir: bool | None = None) -> bool:
        if version_path is None or filename not in content:
            return False
        return want_dir is None or (version_path / filename).is_dir() == want_dir

    # TensorFlow: the platform decides.
    if not config.platform and config.backend in ("", _TF_BACKEND):
        if config.default_model_filename == _TF_SAVEDMODEL_FILE:
            config.platform = _TF_SAVEDMODEL_PLATFORM
        elif config.default_model_filename == _TF_GRAPHDEF_FILE:
            config.platform = _TF_GRAPHDEF_PLATFORM
        elif not config.default_model_filename and has_version:
            if present(_TF_SAVEDMODEL_FILE, want_dir=True):
                config.platform = _TF_SAVEDMODEL_PLATFORM
            if present(_TF_GRAPHDEF_FILE, want_dir=False):
                config.platform = _TF_GRAPHDEF_PLATFORM
    if config.platform in (_TF_SAVEDMODEL_PLATFORM, _TF_GRAPHDEF_PLATFORM):
        config.backend = config.backend or _TF_BACKEND
        if not config.default_model_filename:
            config.default_model_filename = (
                _TF_SAVEDMODEL_FILE
                if config.platform == _TF_SAVEDMODEL_PLATFORM
                else _TF_GRAPHDEF_FILE
            )
        return

    unspecified = not config.platform and not config.default_model_filename and has_version

    # TensorRT
    if not config.backend and (
        config.platform == _TRT_PLATFORM
        or config.default_model_filename == _TRT_FILE
        or (unspecified and present(_TRT_FILE, want_dir=False))
    ):
        config.backend = _TRT_BACKEND
    if config.backend == _TRT_BACKEND:
        config.platform = config.platform or _TRT_PLATFORM
        config.default_model_filename = config.default_model_filename or _TRT_FILE
        return

    # ONNX Runtime (model.onnx may be a file or a directory)
    if not config.backend and (
        config.platform == _ONNX_PLATFORM
        or config.default_model_filename == _ONNX_FILE
        or (unspecified and present(_ONNX_FILE))
    ):
        config.backend = _ONNX_BACKEND
    if config.backend == _ONNX_BACKEND:
        config.platform = config.platform or _ONNX_PLATFORM
        config.default_model_filename = config.default_model_filename or _ONNX_FILE
        return

    # OpenVINO
    if not config.backend and (
        config.default_model_filename == _OPENVINO_FILE or (unspecified and present(_OPENVINO_FILE))
    ):
        config.backend = _OPENVINO_BACKEND
    if config.backend == _OPENVINO_BACKEND:
        config.default_model_filename = config.default_model_filename or _OPENVINO_FILE
        return

    # PyTorch
    if not config.backend:
        if config.platform == _TORCH_PLATFORM or config.default_model_filename == _TORCH_FILE:
            config.backend = _TORCH_BACKEND
        elif unspecified and present(_TORCH_FILE, want_dir=False):
            config.backend = _TORCH_BACKEND
            config.platform = _TORCH_PLATFORM
    if config.backend == _TORCH_BACKEND:
        config.platform = config.platform or _TORCH_PLATFORM
        config.default_model_filename = config.default_model_filename or _TORCH_FILE
        return

    # Python
    if not config.backend and (
        config.default_model_filename == _PYTHON_FILE or (unspecified and present(_PYTHON_FILE))
    ):
        config.backend = _PYTHON_BACKEND
    if config.backend == _PYTHON_BACKEND:
        config.default_model_filename = config.default_model_filename or _PYTHON_FILE
        return

    # Custom backend: only when nothing at all is given, from a 'model.<backend>' name.
    if not config.backend and not config.platform and not config.default_model_filename:
        _, dot, backend = config.name.partition(".")
        if not dot:
            raise TritonError(
                f"Invalid model name: Could not determine backend for model '{config.name}' "
                "with no backend in model configuration. Expected model name of the form "
                "'model.<backend_name>'.",
                INVALID_ARG,
            )
        config.backend = backend
        config.default_model_filename = f"model.{backend}"


def _normalize(config: ModelConfig) -> None:
    """Triton's NormalizeModelConfig: the defaults that do not depend on devices."""
    if not config.HasField("version_policy"):
        config.version_policy.latest.num_versions = 1
    if config.HasField("dynamic_batching"):
        batching = config.dynamic_batching
        if not batching.preferred_batch_size and config.max_batch_size > 0:
            batching.preferred_batch_size.append(config.max_batch_size)
    if config.HasField("sequence_batching"):
        sequence = config.sequence_batching
        if sequence.max_sequence_idle_microseconds == 0:
            sequence.max_sequence_idle_microseconds = _SEQUENCE_IDLE_DEFAULT_US
        if sequence.HasField("oldest"):
            oldest = sequence.oldest
            if not oldest.preferred_batch_size and config.max_batch_size > 0:
                oldest.preferred_batch_size.append(config.max_batch_size)
    if not config.HasField("ensemble_scheduling"):
        optimization = config.optimization
        if not optimization.HasField("input_pinned_memory"):
            optimization.input_pinned_memory.enable = True
        if not optimization.HasField("output_pinned_memory"):
            optimization.output_pinned_memory.enable = True


def _normalize_instance_groups(config: ModelConfig, gpus: Sequence[int]) -> None:
    """Triton's NormalizeInstanceGroup (no backend-preferred groups)."""
    if config.HasField("ensemble_scheduling"):
        return
    supported = set(gpus)
    group_cls = _pb.ModelInstanceGroup
    if not config.instance_group:
        config.instance_group.add(name=config.name)
    for index, group in enumerate(config.instance_group):
        if not group.name:
            group.name = f"{config.name}_{index}"
        if group.kind == group_cls.KIND_AUTO:
            if not supported or any(g not in supported for g in group.gpus):
                group.kind = group_cls.KIND_CPU
            else:
                group.kind = group_cls.KIND_GPU
        if group.count < 1:
            cpu_default = group.kind == group_cls.KIND_CPU and config.backend in (
                _TF_BACKEND,
                _ONNX_BACKEND,
            )
            group.count = 2 if cpu_default else 1
        if group.kind == group_cls.KIND_GPU and not group.gpus:
            group.gpus.extend(sorted(supported))


def _backend_setting(
    hints: Mapping[str, Mapping[str, str]] | None, backend: str, key: str
) -> str | None:
    if not hints:
        return None
    for scope in (backend, ""):
        value = hints.get(scope, {}).get(key)
        if value is not None:
            return value
    return None


def _merge_auto_completed(config: ModelConfig, completed: ModelConfig) -> None:
    """Take what a backend may auto-complete, as Triton's TritonModel::UpdateModelConfig."""
    if getattr(completed, "DESCRIPTOR", None) is not ModelConfig.DESCRIPTOR:
        raise TritonError(
            f"auto-complete for model '{config.name}' must return a ModelConfig, "
            f"got {type(completed).__name__}",
            INVALID_ARG,
        )
    config.max_batch_size = completed.max_batch_size
    del config.input[:]
    config.input.extend(completed.input)
    del config.output[:]
    config.output.extend(completed.output)
    if config.WhichOneof("scheduling_choice") is None:
        choice = completed.WhichOneof("scheduling_choice")
        if choice is not None:
            getattr(config, choice).CopyFrom(getattr(completed, choice))
    if completed.HasField("model_transaction_policy"):
        config.model_transaction_policy.decoupled = completed.model_transaction_policy.decoupled


# --------------------------------------------------------------------------- ONNX


@dataclass(frozen=True)
class _OnnxTensor:
    name: str
    data_type: str  # config name, "" when the type is not a supported tensor type
    dims: list[int]


def _onnx_model_path(config: ModelConfig, model_dir: Path) -> Path | None:
    for version in sorted(version_dirs(model_dir), reverse=True):
        path = model_dir / str(version) / str(config.default_model_filename)
        if path.is_dir() and (path / _ONNX_FILE).is_file():
            return path / _ONNX_FILE  # a large model stored as a directory
        if path.is_file():
            return path
    return None


def _read_onnx_signature(path: Path) -> tuple[list[_OnnxTensor], list[_OnnxTensor]]:
    """Graph inputs (initializers excluded) and outputs, with -1 for unknown dims."""
    try:
        import onnx
    except ImportError:
        return _read_ort_signature(path)

    model = onnx.load(str(path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}

    def convert(value: Any) -> _OnnxTensor:
        tensor_type = value.type.tensor_type if value.type.HasField("tensor_type") else None
        data_type = _ONNX_ELEM_TYPES.get(tensor_type.elem_type, "") if tensor_type else ""
        dims: list[int] = []
        if tensor_type is not None and tensor_type.HasField("shape"):
            dims = [
                d.dim_value if d.HasField("dim_value") else _WILDCARD_DIM
                for d in tensor_type.shape.dim
            ]
        return _OnnxTensor(value.name, data_type, dims)

    inputs = [convert(v) for v in model.graph.input if v.name not in initializers]
    outputs = [convert(v) for v in model.graph.output]
    return inputs, outputs


def _read_ort_signature(path: Path) -> tuple[list[_OnnxTensor], list[_OnnxTensor]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def convert(arg: Any) -> _OnnxTensor:
        shape = arg.shape if isinstance(arg.shape, list) else []
        dims = [d if isinstance(d, int) and d >= 0 else _WILDCARD_DIM for d in shape]
        return _OnnxTensor(arg.name, _ORT_TYPES.get(arg.type, ""), dims)

    return [convert(a) for a in session.get_inputs()], [convert(a) for a in session.get_outputs()]


def _onnx_auto_complete(
    config: ModelConfig,
    model_dir: Path,
    hints: Mapping[str, Mapping[str, str]] | None,
) -> None:
    """The onnxruntime backend's auto-complete: max_batch_size, batching, inputs, outputs.

    As Triton's onnxruntime backend (AutoCompleteConfig): a config that already lists inputs
    (or batch inputs) and outputs is left alone, max_batch_size included; otherwise the model
    fills max_batch_size and the missing side(s), a listed side kept as it is.
    """
    has_inputs = len(config.input) + len(config.batch_input) > 0
    has_outputs = len(config.output) > 0
    if has_inputs and has_outputs:
        _log.info(
            "skipping model configuration auto-complete for '%s': inputs and outputs already "
            "specified",
            config.name,
        )
        return
    path = _onnx_model_path(config, model_dir)
    if path is None:
        return  # nothing to read; loading the backend reports the missing file
    try:
        inputs, outputs = _read_onnx_signature(path)
    except Exception as e:  # noqa: BLE001 - any reader failure is a bad model file
        raise TritonError(
            f"autofill failed for model '{config.name}': unable to read {path}: {e}",
            INVALID_ARG,
        ) from None

    can_batch = all(t.dims and t.dims[0] == _WILDCARD_DIM for t in (*inputs, *outputs))
    if can_batch:
        if config.max_batch_size == 0:
            setting = _backend_setting(hints, _ONNX_BACKEND, "default-max-batch-size")
            default = _DEFAULT_MAX_BATCH_SIZE if setting is None else int(setting)
            config.max_batch_size = max(default, 0)
            _log.warning(
                "autofilled max_batch_size to %d for model '%s' since batching is "
                "supporrted but no max_batch_size is specified in model configuration. "
                "Must specify max_batch_size to utilize autofill with a larger max batch "
                "size",
                config.max_batch_size,
                config.name,
            )
        if config.max_batch_size > 1 and config.WhichOneof("scheduling_choice") is None:
            config.dynamic_batching.SetInParent()
    elif config.max_batch_size != 0:
        raise TritonError(
            f"autofill failed for model '{config.name}': model does not support batching "
            "while non-zero max_batch_size is specified",
            INVALID_ARG,
        )

    # Tensors the sequence batcher supplies or consumes (control inputs, implicit state) are
    # model tensors but not client tensors: they never join the config's inputs or outputs.
    seq = config.sequence_batching
    server_inputs = {c.name for c in seq.control_input} | {s.input_name for s in seq.state}
    server_inputs |= {name for b in config.batch_input for name in b.target_name}  # batch_input
    server_outputs = {s.output_name for s in seq.state}
    if not has_inputs:
        found = [t for t in inputs if t.name not in server_inputs]
        _complete_ios(config, config.input, found, "input")
    if not has_outputs:
        _complete_ios(
            config, config.output, [t for t in outputs if t.name not in server_outputs], "output"
        )


def _complete_ios(config: ModelConfig, ios: Any, found: list[_OnnxTensor], kind: str) -> None:
    """Keep the configured tensors (filling a missing data_type/dims), add the others."""
    by_name = {t.name: t for t in found}
    listed = set()
    for io in ios:
        listed.add(io.name)
        tensor = by_name.get(io.name)
        if tensor is None:
            continue
        if io.data_type == _pb.TYPE_INVALID and tensor.data_type:
            io.data_type = _pb.DataType.Value(tensor.data_type)
        if not io.dims:
            dims, reshape = _config_dims(tensor.dims, config.max_batch_size)
            io.dims.extend(dims)
            if reshape and not io.HasField("reshape"):
                io.reshape.SetInParent()
    for tensor in found:
        if tensor.name in listed:
            continue
        if not tensor.data_type:
            raise TritonError(
                f"autofill failed for model '{config.name}': unsupported ONNX type for "
                f"{kind} '{tensor.name}'",
                INVALID_ARG,
            )
        dims, reshape = _config_dims(tensor.dims, config.max_batch_size)
        io = ios.add(name=tensor.name, data_type=_pb.DataType.Value(tensor.data_type))
        io.dims.extend(dims)
        if reshape:
            io.reshape.SetInParent()


def _config_dims(model_dims: list[int], max_batch_size: int) -> tuple[list[int], bool]:
    """Config dims for model dims (batch dim dropped when batching) and whether an empty
    reshape is needed (a scalar per batch item is written as dims [1], reshape [])."""
    dims = list(model_dims[1:] if max_batch_size > 0 else model_dims)
    if dims:
        return dims, False
    return [1], max_batch_size > 0


# --------------------------------------------------------------------------- validation


def _invalid(message: str) -> TritonError:
    return TritonError(message, INVALID_ARG)


def _validate_model(config: ModelConfig) -> None:
    """Triton's ValidateModelConfig (what it checks when polling the repository)."""
    name = config.name
    if not name:
        raise _invalid("model configuration must specify 'name'")
    if not config.backend:
        if config.platform != _ENSEMBLE_PLATFORM:
            raise _invalid(f"unexpected platform type '{config.platform}' for {name}")
    elif config.platform == _ENSEMBLE_PLATFORM:
        raise _invalid(
            f"Ensemble model '{name}' must have platform type '{config.platform}' and empty "
            "backend type"
        )
    backend_kind = _BACKEND_KIND.get(config.backend)
    if backend_kind is not None and backend_kind != _PLATFORM_KIND.get(config.platform):
        raise _invalid(
            f"unexpected 'platform' and 'backend' pair, got:{config.platform}, {config.backend}"
        )
    if config.max_batch_size < 0:
        raise _invalid(f"'max_batch_size' must be non-negative value for {name}")
    if not config.HasField("version_policy"):
        raise _invalid(f"must specify 'version policy' for {name}")
    policy = config.version_policy
    if policy.WhichOneof("policy_choice") == "specific" and not policy.specific.versions:
        # Triton accepts this and then finds no version to load; say so up front.
        raise _invalid(
            f"at least one version must be available under the version policy of model '{name}'"
        )

    if config.HasField("dynamic_batching"):
        _validate_dynamic_batching(config)
    if config.HasField("sequence_batching"):
        _validate_sequence_batching(config)

    if config.HasField("ensemble_scheduling"):
        _validate_ensemble(config)
    elif config.platform == _ENSEMBLE_PLATFORM:
        raise _invalid(
            f"ensemble scheduling must be set for ensemble {name} whose platform is "
            f"{_ENSEMBLE_PLATFORM}"
        )

    if config.model_transaction_policy.decoupled and config.response_cache.enable:
        raise _invalid(
            f"Response Cache does not currently support model {name} with 'decoupled' "
            "transaction policy. Please disable the response cache."
        )
    for control in config.model_metrics.metric_control:
        if not control.HasField("metric_identifier"):
            raise _invalid("metric control must specify 'metric_identifier'")
        if not control.metric_identifier.family:
            raise _invalid("metric identifier must specify non-empty 'family'")
        if not control.HasField("histogram_options"):
            raise _invalid("metric control must specify 'histogram_options'")
        if not control.histogram_options.buckets:
            raise _invalid("histogram options must specify non-empty 'buckets'")


def _validate_dynamic_batching(config: ModelConfig) -> None:
    name, batching = config.name, config.dynamic_batching
    for size in batching.preferred_batch_size:
        if size <= 0:
            raise _invalid(f"dynamic batching preferred size must be positive for {name}")
        if size > config.max_batch_size:
            raise _invalid(f"dynamic batching preferred size must be <= max batch size for {name}")
    levels = batching.priority_levels
    if levels != 0:
        if batching.default_priority_level == 0 or batching.default_priority_level > levels:
            raise _invalid(f"default priority level must be in range [1, {levels}] for {name}")
        for level in batching.priority_queue_policy:
            if level == 0 or level > levels:
                raise _invalid(
                    "priority queue policy must have priority level in range "
                    f"[1, {levels}] for {name}"
                )
    if batching.preserve_ordering:
        if levels > 1:
            raise _invalid(
                f"Only one priority level is allowed when 'preserve_ordering' is true for {name}"
            )
        delay = _pb.ModelQueuePolicy.DELAY
        policies = [batching.default_queue_policy, *batching.priority_queue_policy.values()]
        for policy in policies:
            if policy.default_timeout_microseconds != 0 and policy.timeout_action == delay:
                raise _invalid(
                    "Queue policy can not have DELAY as timeout action when "
                    f"'preserve_ordering' is true for {name}"
                )


def _validate_sequence_batching(config: ModelConfig) -> None:
    name, batcher = config.name, config.sequence_batching
    if config.response_cache.enable:
        raise _invalid(
            f"Response Cache does not currently support model {name} with sequence batching "
            "scheduler. Please disable the response cache."
        )
    kind = _pb.ModelSequenceBatching.Control
    for control_kind in (
        kind.CONTROL_SEQUENCE_START,
        kind.CONTROL_SEQUENCE_END,
        kind.CONTROL_SEQUENCE_READY,
    ):
        _check_sequence_control(batcher, name, control_kind, typed=False)
    corrid = _check_sequence_control(batcher, name, kind.CONTROL_SEQUENCE_CORRID, typed=True)
    allowed = (_pb.TYPE_UINT64, _pb.TYPE_INT64, _pb.TYPE_UINT32, _pb.TYPE_INT32, _pb.TYPE_STRING)
    if corrid is not None and corrid not in allowed:
        raise _invalid(
            f"unexpected data type for control CONTROL_SEQUENCE_CORRID for {name}. Allowed "
            "data types are TYPE_UINT64, TYPE_INT64, TYPE_UINT32, TYPE_INT32 and TYPE_STRING"
        )
    if batcher.HasField("oldest"):
        for size in batcher.oldest.preferred_batch_size:
            if size <= 0:
                raise _invalid(
                    f"sequence batching preferred batch size must be positive for {name}"
                )
            if size > config.max_batch_size:
                raise _invalid(
                    f"sequence batching preferred batch size must be <= max batch size for {name}"
                )
    if batcher.HasField("direct"):
        utilization = batcher.direct.minimum_slot_utilization
        if utilization < 0.0 or utilization > 1.0:
            raise _invalid(
                f"sequence batching minimum slot utilization must be in range (0.0, 1.0] for {name}"
            )


def _check_sequence_control(
    batcher: Any, name: str, control_kind: int, *, typed: bool
) -> int | None:
    """Triton's Get{Boolean,Typed}SequenceControlProperties; the CORRID data type if typed."""
    kind_name = _pb.ModelSequenceBatching.Control.Kind.Name(control_kind)
    seen_tensors: set[str] = set()
    seen: int | None = None
    for control_input in batcher.control_input:
        if not control_input.name:
            raise _invalid(f"sequence batching control tensor must have a name for {name}")
        if control_input.name in seen_tensors:
            raise _invalid(
                f"sequence batching control tensor '{control_input.name}' is specified for "
                f"multiple control kinds for {name}"
            )
        seen_tensors.add(control_input.name)
        for c in control_input.control:
            if c.kind != control_kind:
                continue
            if seen is not None:
                raise _invalid(
                    f"sequence batching specifies multiple {kind_name} tensors for {name}"
                )
            seen = c.data_type
            counts = {
                "int32_false_true": len(c.int32_false_true),
                "fp32_false_true": len(c.fp32_false_true),
                "bool_false_true": len(c.bool_false_true),
            }
            given = [field for field, n in counts.items() if n]
            if typed:
                if given:
                    raise _invalid(
                        "sequence batching must not specify either 'int32_false_true', "
                        f"'fp32_false_true' or 'bool_false_true' for {kind_name} for {name}"
                    )
                continue
            if not given:
                raise _invalid(
                    "sequence batching must specify either 'int32_false_true', "
                    f"'fp32_false_true' or 'bool_false_true' for {kind_name} for {name}"
                )
            if len(given) > 1:
                raise _invalid(
                    "sequence batching specifies more than one from 'int32_false_true', "
                    f"'fp32_false_true' and 'bool_false_true' for {kind_name} for {name}"
                )
            if counts[given[0]] != 2:
                raise _invalid(
                    f"sequence batching control '{given[0]}' must have exactly 2 entries for "
                    f"{kind_name} for {name}"
                )
    return seen


def _validate_ensemble(config: ModelConfig) -> None:
    """Triton's ValidateEnsembleSchedulingConfig, data-flow checks included."""
    name = config.name
    if config.platform != _ENSEMBLE_PLATFORM:
        raise _invalid(
            f"ensemble scheduling cannot be set for model '{name}' whose platform is not "
            f"{_ENSEMBLE_PLATFORM}"
        )
    if config.instance_group:
        raise _invalid(f"instance group should not be specified for ensemble '{name}'")
    if config.HasField("optimization"):
        raise _invalid(f"optimization should not be specified for ensemble '{name}'")
    if config.model_warmup:
        raise _invalid(f"model_warmup can not be specified for ensemble '{name}'")
    steps = config.ensemble_scheduling.step
    if not steps:
        raise _invalid(f"must specify 'step' for ensemble '{name}'")

    # Ensemble tensor graph: tensor -> (is written by a step, tensors it feeds, its sources)
    written: dict[str, bool] = {}
    feeds: dict[str, list[str]] = {}
    sources: dict[str, list[str]] = {}
    for index, step in enumerate(steps):
        for field in ("model_name", "input_map", "output_map"):
            if not getattr(step, field):
                raise _invalid(f"must specify '{field}' in step {index} of ensemble '{name}'")
        step_outputs = []
        for tensor in step.output_map.values():
            if written.get(tensor):
                raise _invalid(
                    f"ensemble tensor '{tensor}' can appear in an output map only once for "
                    f"ensemble '{name}' step {index}"
                )
            written[tensor] = True
            feeds.setdefault(tensor, [])
            sources.setdefault(tensor, [])
            step_outputs.append(tensor)
        for tensor in step.input_map.values():
            written.setdefault(tensor, False)
            feeds.setdefault(tensor, [])
            sources.setdefault(tensor, [])
            for out in step_outputs:
                sources[out].append(tensor)
                feeds[tensor].append(out)

    ready: set[str] = set()
    queue: list[str] = []
    for io in config.input:
        if io.name not in feeds:
            raise _invalid(f"ensemble input '{io.name}' for ensemble {name}' is not used")
        ready.add(io.name)
        queue.append(io.name)
    while queue:
        tensor = queue.pop(0)
        for nxt in feeds[tensor]:
            if nxt not in ready and all(src in ready for src in sources[nxt]):
                ready.add(nxt)
                queue.append(nxt)
    outputs = set()
    for io in config.output:
        if io.name not in feeds:
            raise _invalid(f"ensemble output '{io.name}' for ensemble {name}' is not used")
        if io.name not in ready:
            message = f"output '{io.name}' for ensemble '{name}' is not written"
            missing = _first_unready_source(io.name, sources, ready)
            if missing is not None:
                message += f": at least one of its depending tensors, '{missing}', is not connected"
            raise _invalid(message)
        outputs.add(io.name)
    for tensor, consumers in feeds.items():
        if tensor not in outputs and (tensor not in ready or not consumers):
            raise _invalid(f"ensemble tensor '{tensor}' is unused in ensemble '{name}'")


def _first_unready_source(
    tensor: str, sources: dict[str, list[str]], ready: set[str]
) -> str | None:
    last, seen = tensor, set()
    current: list[str] | None = sources.get(tensor)
    while current:
        nxt = None
        for src in current:
            if src not in ready and src not in seen:
                seen.add(src)
                last, nxt = src, sources.get(src)
                break
        current = nxt
    return None if last == tensor else last


def _validate_instance_groups(config: ModelConfig, gpus: Sequence[int]) -> None:
    """Triton's ValidateInstanceGroup."""
    if config.HasField("ensemble_scheduling"):
        return
    name = config.name
    if not config.instance_group:
        raise _invalid(f"must specify one or more 'instance group's for {name}")
    group_cls = _pb.ModelInstanceGroup
    supported = set(gpus)
    for group in config.instance_group:
        prefix = f"instance group {group.name} of model {name}"
        if group.kind == group_cls.KIND_MODEL:
            if group.gpus:
                raise _invalid(f"{prefix} has kind KIND_MODEL but specifies one or more GPUs")
        elif group.kind == group_cls.KIND_GPU:
            if not group.gpus:
                if not supported:
                    raise _invalid(f"{prefix} has kind KIND_GPU but no GPUs are available")
                raise _invalid(f"{prefix} has kind KIND_GPU but specifies no GPUs")
            for gpu in group.gpus:
                if gpu not in supported:
                    raise _invalid(
                        f"{prefix} specifies invalid or unsupported gpu id {gpu}. GPUs with at "
                        "least the minimum required CUDA compute compatibility of "
                        f"{_MIN_COMPUTE_CAPABILITY:f} are: "
                        + ", ".join(str(g) for g in sorted(supported))
                    )
        elif group.kind == group_cls.KIND_CPU:
            if group.gpus:
                raise _invalid(f"{prefix} has kind KIND_CPU but specifies one or more GPUs")
        else:
            raise TritonError(f"{prefix} has unexpected kind KIND_AUTO", "INTERNAL")
        if config.platform != _TRT_PLATFORM and group.profile:
            raise _invalid(
                f"{prefix} and platform {config.platform}specifies profile field which is "
                "only supported for TensorRT models"
            )


def _validate_io(config: ModelConfig) -> None:
    """Triton's ValidateModelIOConfig, plus unique tensor names."""
    name = config.name
    for kind, ios in (("input", config.input), ("output", config.output)):
        seen: set[str] = set()
        for io in ios:
            problem = _io_problem(io, kind, config)
            if problem:
                raise _invalid(f"{problem} for {name}")
            if io.name in seen:
                raise _invalid(f"model {kind} '{io.name}' is specified more than once for {name}")
            seen.add(io.name)
    problem = _batch_io_problem(config)
    if problem:
        raise _invalid(f"{problem} for {name}")


def _io_problem(io: Any, kind: str, config: ModelConfig) -> str | None:
    prefix = f"model {kind} "
    if not io.name:
        return prefix + "must specify 'name'"
    prefix += f"'{io.name}' "
    if io.data_type == _pb.TYPE_INVALID:
        return prefix + "must specify 'data_type'"
    if io.data_type not in _pb.DataType.values():
        return (
            prefix + f"has unknown data_type {io.data_type} "
            f"(valid values: {', '.join(_enum_names('inference.DataType'))})"
        )
    if not io.dims:
        return prefix + "must specify 'dims'"
    has_reshape = io.HasField("reshape")
    if has_reshape and not io.reshape.shape and config.max_batch_size == 0:
        return (
            prefix + "cannot have empty reshape for non-batching model as scalar tensors are "
            "not supported"
        )
    variable = "-1 to indicate a variable-size dimension"
    if any(d < 1 and d != _WILDCARD_DIM for d in io.dims):
        return prefix + f"dimension must be integer >= 1, or {variable}"
    if has_reshape:
        shape = list(io.reshape.shape)
        if any(d < 1 and d != _WILDCARD_DIM for d in shape):
            return prefix + f"reshape dimensions must be integer >= 1, or {variable}"
        dims_size, reshape_size = _element_count(io.dims), _element_count(shape)
        if dims_size != reshape_size and (reshape_size != 0 or dims_size != 1):
            return prefix + "has different size for dims and reshape"
        if dims_size == _WILDCARD_DIM:
            dim_chunks, reshape_chunks = _chunk_counts(io.dims), _chunk_counts(shape)
            if len(dim_chunks) != len(reshape_chunks):
                return (
                    prefix + "has different number of variable-size dimensions for dims and reshape"
                )
            if dim_chunks != reshape_chunks:
                return prefix + "has different size for dims and reshape"
    if kind == "input":
        formats = (_pb.ModelInput.FORMAT_NHWC, _pb.ModelInput.FORMAT_NCHW)
        if io.format in formats and len(io.dims) != 3:
            return "model input NHWC/NCHW require 3 dims"
    if config.platform != _TRT_PLATFORM and io.is_shape_tensor:
        return "shape tensors are only supported for TensorRT platform"
    if io.is_non_linear_format_io:
        if config.platform != _TRT_PLATFORM:
            return "Non-linear IO format is only supported for the TensorRT platform"
        if len(io.dims) != 3:
            return f"Non-linear IO format {kind} requires 3 dims"
    return None


def _element_count(dims: Iterable[int]) -> int:
    """Triton's GetElementCount: -1 with a variable dim, 0 for no dims."""
    count: int | None = None
    for d in dims:
        if d == _WILDCARD_DIM:
            return _WILDCARD_DIM
        count = d if count is None else count * d
    return count or 0


def _chunk_counts(dims: Iterable[int]) -> list[int]:
    chunks, current = [], 1
    for d in dims:
        if d == _WILDCARD_DIM:
            chunks.append(current)
            current = 1
        else:
            current *= d
    chunks.append(current)
    return chunks


def _batch_io_problem(config: ModelConfig) -> str | None:
    inputs = {io.name for io in config.input}
    outputs = {io.name for io in config.output}
    for batch_input in config.batch_input:
        kind = _pb.BatchInput.Kind.Name(batch_input.kind)
        if len(batch_input.source_input) != 1:
            return (
                f"batch input kind '{kind}' expects 1 source input, got "
                f"{len(batch_input.source_input)}"
            )
        if batch_input.data_type not in (_pb.TYPE_INT32, _pb.TYPE_FP32):
            return "batch input data type must be TYPE_INT32 or TYPE_FP32"
        for source in batch_input.source_input:
            if source not in inputs:
                return f"unknown source input name '{source}'"
    for batch_output in config.batch_output:
        kind = _pb.BatchOutput.Kind.Name(batch_output.kind)
        if len(batch_output.source_input) != 1:
            return (
                f"batch output kind '{kind}' expects 1 source input, got "
                f"{len(batch_output.source_input)}"
            )
        for source in batch_output.source_input:
            if source not in inputs:
                return f"unknown source input name '{source}'"
        targets: set[str] = set()
        for target in batch_output.target_name:
            if target not in outputs:
                return f"unknown target output name '{target}'"
            if target in targets:
                return f"target output name '{target}' can only be specified once"
            targets.add(target)
    return None


# --------------------------------------------------------------------------- JSON


def _wire_datatype(data_type: int) -> str:
    if data_type not in _pb.DataType.values():
        return "INVALID"
    return datatypes.to_wire_name(_pb.DataType.Name(data_type))


def _as_ints(values: list[Any]) -> list[Any]:
    return [int(v) if isinstance(v, str) else v for v in values]


def _fix_int(obj: dict[str, Any], key: str) -> None:
    if isinstance(obj.get(key), str):
        obj[key] = int(obj[key])


def _fix_int_list(obj: dict[str, Any], key: str) -> None:
    if isinstance(obj.get(key), list):
        obj[key] = _as_ints(obj[key])


def _fix_int64_fields(raw: dict[str, Any]) -> None:
    """The 64-bit fields Triton's ModelConfigToJson prints as numbers (the rest stay strings)."""
    for io in (*raw.get("input", []), *raw.get("output", [])):
        _fix_int_list(io, "dims")
        if "reshape" in io:
            _fix_int_list(io["reshape"], "shape")
    specific = raw.get("version_policy", {}).get("specific")
    if specific is not None:
        _fix_int_list(specific, "versions")
    batching = raw.get("dynamic_batching")
    if batching is not None:
        for key in ("max_queue_delay_microseconds", "priority_levels", "default_priority_level"):
            _fix_int(batching, key)
        if "default_queue_policy" in batching:
            _fix_int(batching["default_queue_policy"], "default_timeout_microseconds")
        for policy in batching.get("priority_queue_policy", {}).values():
            _fix_int(policy, "default_timeout_microseconds")
    sequence = raw.get("sequence_batching")
    if sequence is not None:
        _fix_int(sequence, "max_sequence_idle_microseconds")
        for strategy in ("oldest", "direct"):
            if strategy in sequence:
                _fix_int(sequence[strategy], "max_queue_delay_microseconds")
        for state in sequence.get("state", []):
            _fix_int_list(state, "dims")
    for step in raw.get("ensemble_scheduling", {}).get("step", []):
        _fix_int(step, "model_version")
    for warmup in raw.get("model_warmup", []):
        for warmup_input in warmup.get("inputs", {}).values():
            _fix_int_list(warmup_input, "dims")


def _ordered(raw: dict[str, Any], desc: _descriptor.Descriptor) -> dict[str, Any]:
    """Keys in declaration order, as Triton's (C++) JSON printer writes them."""
    result: dict[str, Any] = {}
    for field in desc.fields:
        if field.name not in raw:
            continue
        value = raw[field.name]
        msg = field.message_type
        if msg is not None:
            if msg.GetOptions().map_entry:
                value_msg = msg.fields_by_name["value"].message_type
                if value_msg is not None:
                    value = {k: _ordered(v, value_msg) for k, v in value.items()}
            elif isinstance(value, list):
                value = [_ordered(v, msg) for v in value]
            elif isinstance(value, dict):
                value = _ordered(value, msg)
        result[field.name] = value
    return result
