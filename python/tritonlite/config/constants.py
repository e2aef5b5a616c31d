"""Names and numbers the config modules share: Triton's backend, platform and default model
file names (core/src/constants.h), the ``ModelConfig`` type, and enum-name lookups."""

from __future__ import annotations

import re
from typing import TypeAlias

from .._proto import model_config_pb2 as _pb

ModelConfig: TypeAlias = _pb.ModelConfig

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

WILDCARD_DIM = -1
SEQUENCE_IDLE_DEFAULT_US = 1_000_000
MIN_COMPUTE_CAPABILITY = 6.0
VERSION_DIR_RE = re.compile(r"0|[1-9][0-9]*")


def enum_names(full_name: str) -> list[str]:
    """The value names of a ModelConfig enum (``*_INVALID`` left out), for error messages."""
    try:
        enum = _pb.DESCRIPTOR.pool.FindEnumTypeByName(full_name)
    except KeyError:
        return []
    return [v.name for v in enum.values if not v.name.endswith("_INVALID")]
