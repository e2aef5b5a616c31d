"""Reading a config: ``config.pbtxt`` (protobuf text format, or ``configs/<name>.pbtxt`` under
``--model-config-name``) and the load API's JSON override, with Triton's error texts. Enum
names in an override match case-insensitively, as in Triton."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from google.protobuf import descriptor as _descriptor
from google.protobuf import json_format, text_format

from ..errors import INVALID_ARG, TritonError
from .constants import CONFIG_FILENAME, ModelConfig, enum_names


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


def read_config(
    model_dir: Path, name: str, override: str | None, auto_complete: bool, config_name: str = ""
) -> ModelConfig:
    if override is not None:
        return parse_override(override, name)
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
    config = parse_override(override, name)
    if config.name and config.name != name:
        raise TritonError(
            f"unexpected directory name '{name}' for model '{config.name}', "
            "directory name must equal model name",
            INVALID_ARG,
        )


def parse_override(override: str, name: str) -> ModelConfig:
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
            message += f" (valid values: {', '.join(enum_names(enum.group(1)))})"
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


def _describe_text_error(e: text_format.ParseError) -> str:
    line, column = e.GetLine(), e.GetColumn()
    detail = re.sub(r"^\d+:\d+ : ", "", str(e))
    if line is not None and column is not None:
        detail = f"{line}:{column}: {detail}"
    enum = re.search(r'Enum type "([\w.]+)" has no value named', detail)
    if enum:
        detail += f" (valid values: {', '.join(enum_names(enum.group(1)))})"
    return detail

