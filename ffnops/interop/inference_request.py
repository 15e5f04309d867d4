"""Google's inference request (``.pbtxt``) read by protobuf's own text-format parser.

ffnops defines the message types of google/ffn's ``ffn/inference/inference.proto`` (with
``utils/vector.proto`` and ``utils/bounding_box.proto``) here, by field name, number and type, so
a request parses exactly as Google's ``text_format.Parse`` parses it: ``#`` comments, quoted
strings with escapes, repeated fields, nested messages, and an error for any field the proto does
not have. No ``protoc`` is needed: the types are built from a ``FileDescriptorProto``.

Then :func:`request_settings` maps the fields ffnops implements onto its settings, axes reversed
from Google's (x, y, z) to (z, y, x). A request that sets an option ffnops does not implement
(masks, shift masks, another movement policy, ...) is refused by name rather than ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.message import Message

from ffnops.errors import FfnopsError

_F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_TYPES = {"string": _F.TYPE_STRING, "float": _F.TYPE_FLOAT, "int32": _F.TYPE_INT32,
          "int64": _F.TYPE_INT64, "uint64": _F.TYPE_UINT64, "bool": _F.TYPE_BOOL}  # fmt: skip

# message -> (field, number, type or message name, repeated, oneof index); as in google/ffn.
_MESSAGES: dict[str, list[tuple[str, int, str, bool, int | None]]] = {
    "Vector3j": [("x", 1, "int64", False, None), ("y", 2, "int64", False, None),
                 ("z", 3, "int64", False, None)],
    "BoundingBox": [("start", 1, "Vector3j", False, None), ("size", 2, "Vector3j", False, None)],
    "DecoratedVolume": [("volinfo", 1, "string", False, 0), ("hdf5", 3, "string", False, 0),
                        ("decorator_specs", 2, "string", False, None)],
    "MaskChannelConfig": [("channel", 1, "int32", False, None),
                          ("min_value", 2, "float", False, None),
                          ("max_value", 3, "float", False, None),
                          ("values", 5, "uint64", True, None), ("invert", 4, "bool", False, None)],
    "ImageMaskOptions": [("channels", 1, "MaskChannelConfig", True, None)],
    "VolumeMaskOptions": [("mask", 1, "DecoratedVolume", False, None),
                          ("channels", 2, "MaskChannelConfig", True, None)],
    "CoordinateExpressionOptions": [("expression", 1, "string", False, None)],
    "MaskConfig": [("volume", 1, "VolumeMaskOptions", False, 0),
                   ("image", 2, "ImageMaskOptions", False, 0),
                   ("coordinate_expression", 3, "CoordinateExpressionOptions", False, 0),
                   ("invert", 4, "bool", False, None)],
    "InferenceOptions": [("init_activation", 1, "float", False, None),
                         ("pad_value", 2, "float", False, None),
                         ("move_threshold", 3, "float", False, None),
                         ("consistency_threshold", 4, "float", False, None),
                         ("disco_seed_threshold", 5, "float", False, None),
                         ("min_boundary_dist", 6, "Vector3j", False, None),
                         ("segment_threshold", 7, "float", False, None),
                         ("min_segment_size", 8, "int32", False, None)],
    "SelfPredictionOptions": [("threshold", 1, "float", False, None),
                              ("orig_threshold", 2, "float", False, None)],
    "AlignmentOptions": [("type", 1, "AlignType", False, None),
                         ("save_raw", 6, "bool", False, None)],
    "InferenceRequest": [
        ("image", 24, "DecoratedVolume", False, None), ("image_mean", 2, "float", False, None),
        ("image_stddev", 3, "float", False, None),
        ("reference_histogram", 4, "string", False, None),
        ("histogram_masks", 26, "MaskConfig", True, None), ("masks", 5, "MaskConfig", True, None),
        ("seed_masks", 30, "MaskConfig", True, None),
        ("shift_mask", 6, "DecoratedVolume", False, None),
        ("shift_mask_fov", 22, "BoundingBox", False, None),
        ("shift_mask_scale", 7, "int32", False, None),
        ("shift_mask_threshold", 8, "int32", False, None),
        ("movement_policy_name", 9, "string", False, None),
        ("movement_policy_args", 10, "string", False, None),
        ("model_name", 11, "string", False, None), ("model_args", 12, "string", False, None),
        ("model_checkpoint_path", 13, "string", False, None),
        ("batch_size", 27, "int32", False, None), ("concurrent_requests", 28, "int32", False, None),
        ("inference_options", 14, "InferenceOptions", False, None),
        ("segmentation_output_dir", 15, "string", False, None),
        ("checkpoint_interval", 16, "int32", False, None),
        ("seed_policy", 17, "string", False, None), ("seed_policy_args", 19, "string", False, None),
        ("self_prediction", 18, "SelfPredictionOptions", False, None),
        ("alignment_options", 20, "AlignmentOptions", False, None),
        ("init_segmentation", 25, "DecoratedVolume", False, None),
    ],
}  # fmt: skip
_ONEOFS = {"DecoratedVolume": "volume_path", "MaskConfig": "source"}
_ENUMS = {"AlignType": ("AlignmentOptions", {"UNKNOWN_ALIGNMENT": 0, "NO_ALIGNMENT": 1})}

# Fields that change what Google's inference computes and that ffnops does not implement.
UNSUPPORTED = (
    "reference_histogram", "histogram_masks", "masks", "seed_masks", "shift_mask",
    "shift_mask_fov", "shift_mask_scale", "shift_mask_threshold", "movement_policy_name",
    "movement_policy_args", "seed_policy_args", "self_prediction", "init_segmentation",
    "inference_options.consistency_threshold",
)  # fmt: skip
GOOGLE_SEED_POLICIES = {"PolicyPeaks": "peaks", "PolicyGrid3d": "grid"}


def _request_class() -> type[Message]:
    file = descriptor_pb2.FileDescriptorProto(name="ffnops/inference_request.proto", package="ffn")
    file.syntax = "proto2"
    for name, fields in _MESSAGES.items():
        message = file.message_type.add(name=name)
        if name in _ONEOFS:
            message.oneof_decl.add(name=_ONEOFS[name])
        for enum, (owner, values) in _ENUMS.items():
            if owner == name:
                e = message.enum_type.add(name=enum)
                for value_name, number in values.items():
                    e.value.add(name=value_name, number=number)
        for field, number, kind, repeated, oneof in fields:
            f = message.field.add(name=field, number=number, label=_REP if repeated else _OPT)
            if kind in _TYPES:
                f.type = _TYPES[kind]
            elif kind in _ENUMS:
                f.type, f.type_name = _F.TYPE_ENUM, f".ffn.{_ENUMS[kind][0]}.{kind}"
            else:
                f.type, f.type_name = _F.TYPE_MESSAGE, f".ffn.{kind}"
            if oneof is not None:
                f.oneof_index = oneof
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    cls: type[Message] = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("ffn.InferenceRequest")
    )
    return cls


InferenceRequest = _request_class()


def parse_request(text: str, source: str = "inference request") -> Message:
    """An ``InferenceRequest`` from text format; a parse error names ``source``, line and column."""
    try:
        return text_format.Parse(text, InferenceRequest())
    except text_format.ParseError as e:
        raise FfnopsError(f"{source}: {e} (fields of google/ffn's InferenceRequest)") from None


def read_request(path: str | Path) -> Message:
    """Parses the request file at ``path`` (a missing or unreadable file is named)."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not a text file"
        raise FfnopsError(f"inference request {path}: {reason}") from None
    return parse_request(text, str(path))


@dataclass(frozen=True)
class RequestModel:
    """What a request's ``model_args`` say of the network, in ffnops's (z, y, x) order."""

    fov_size: list[int] | None
    deltas: list[int] | None
    depth: int | None


def request_model(request: Message, source: str = "inference request") -> RequestModel:
    """The network shape of ``model_args`` (Google's JSON, vectors in x, y, z order)."""
    if not request.HasField("model_args"):  # type: ignore[attr-defined]
        return RequestModel(None, None, None)
    try:
        args = json.loads(request.model_args)  # type: ignore[attr-defined]
        if not isinstance(args, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        raise FfnopsError(f"{source}: model_args is not a JSON object ({e})") from None

    def zyx(key: str) -> list[int] | None:
        value = args.get(key)
        return None if value is None else [int(v) for v in value][::-1]

    depth = args.get("depth")
    return RequestModel(zyx("fov_size"), zyx("deltas"), None if depth is None else int(depth))


def request_settings(request: Message, source: str = "inference request") -> dict[str, Any]:
    """ffnops settings from the fields a request sets, axes reversed to (z, y, x).

    Only fields the request sets are returned: an unset option keeps ffnops's default, where
    Google's code would read proto2's 0 (for a probability, logit(0) = -inf). A set option that
    ffnops does not implement is refused, naming it.
    """
    options = request.inference_options  # type: ignore[attr-defined]
    for name in UNSUPPORTED:
        owner, _, field = name.rpartition(".")
        message = options if owner else request
        if _is_set(message, field):
            raise FfnopsError(f"{source}: {name} is set, and ffnops does not implement it")
    settings: dict[str, Any] = _floats(request, ("image_mean", "image_stddev"))
    settings |= _floats(
        options,
        (
            "init_activation",
            "pad_value",
            "move_threshold",
            "segment_threshold",
            "disco_seed_threshold",
        ),
    )
    if options.HasField("min_segment_size"):
        settings["min_segment_size"] = int(options.min_segment_size)
    if options.HasField("min_boundary_dist"):
        d = options.min_boundary_dist
        settings["min_boundary_dist"] = [int(d.z), int(d.y), int(d.x)]
    if request.HasField("seed_policy"):
        policy = str(request.seed_policy)
        if policy not in GOOGLE_SEED_POLICIES:
            raise FfnopsError(
                f"{source}: seed_policy {policy!r} is not one ffnops implements "
                f"(expected one of {', '.join(GOOGLE_SEED_POLICIES)})"
            )
        settings["seed_policy"] = GOOGLE_SEED_POLICIES[policy]
    return settings


def _floats(message: Message, fields: Iterable[str]) -> dict[str, float]:
    """The set float fields, each as the shortest decimal of its float32 (0.95, not 0.9499999...):
    the same float32 reaches the network either way."""
    return {f: float(str(np.float32(getattr(message, f)))) for f in fields if message.HasField(f)}


def _is_set(message: Message, field: str) -> bool:
    if message.DESCRIPTOR.fields_by_name[field].is_repeated:
        return len(getattr(message, field)) > 0
    return bool(message.HasField(field))
