"""Model configuration: everything between a model directory and a finished, validated
``inference.ModelConfig`` protobuf (wire-identical to Triton's). One concern per module:

- ``parse``: ``config.pbtxt`` (text format) and the load API's JSON override;
- ``autocomplete/``: backend, platform and default file name (``backend_fields``), and each
  backend's auto-complete (``onnxruntime``, ``python``);
- ``normalize``: the defaults Triton fills (version policy, batch sizes, instance groups, ...);
- ``validate``: Triton 2.51's checks and error texts;
- ``load``: the pipeline above, in Triton's order (``load_model_config``);
- ``versions``: version directories and the version policy;
- ``instances``: instance-group expansion (the instances to create, with names);
- ``to_json``: the JSON Triton prints for a config (HTTP ``/config``, python models' args);
- ``views``: read-only helpers (tensor specs, ``has_dynamic_batching``);
- ``support``: what tritonlite refuses or warns about, by field.

Import from ``tritonlite.config``; the underscored names below are kept for callers that used
them before the split.
"""

from __future__ import annotations

from .autocomplete.python import PythonAutoComplete
from .constants import CONFIG_FILENAME, ModelConfig
from .instances import InstancePlacement, instance_placements
from .load import load_model_config
from .normalize import normalize, normalize_instance_groups
from .parse import check_config_name, check_override, config_file, parse_config_text, parse_override
from .support import check_config_support
from .to_json import config_to_json
from .validate import validate_instance_groups, validate_io, validate_model
from .versions import select_versions, version_dirs
from .views import TensorSpec, has_dynamic_batching, input_specs, output_specs

# The names these had before config.py became a package (pytriton and tests use them).
_normalize = normalize
_normalize_instance_groups = normalize_instance_groups
_validate_model = validate_model
_validate_io = validate_io
_parse_override = parse_override

__all__ = [
    "CONFIG_FILENAME",
    "InstancePlacement",
    "ModelConfig",
    "PythonAutoComplete",
    "TensorSpec",
    "check_config_name",
    "check_config_support",
    "check_override",
    "config_file",
    "config_to_json",
    "has_dynamic_batching",
    "input_specs",
    "instance_placements",
    "load_model_config",
    "normalize",
    "normalize_instance_groups",
    "output_specs",
    "parse_config_text",
    "parse_override",
    "select_versions",
    "validate_instance_groups",
    "validate_io",
    "validate_model",
    "version_dirs",
]
