"""The one cattrs converter for the RPC wire, and validation errors turned into ``invalid_params``.

Built from cattrs' msgpack preconf with ``forbid_extra_keys=True``. Structuring is strict: a
str field takes only a msgpack str, an int field only an integer (not a bool), a bytes field
only a msgpack bin, an array field only an array; nothing is coerced. A field typed
``X | None`` may be absent: absent means nil, as a ``?`` field of PROTOCOL.md. Enums travel as their
values (``StageResult.status`` is ``"RE"`` or nil), tuples as arrays, bytes as bin.

:func:`structure_or_raise` is the boundary: cattrs' ``ClassValidationError`` becomes
:class:`~pistond.errors.InvalidParams` whose message names each field and what is wrong,
e.g. ``files[0].content is required`` or ``run_timeout must be an integer``.
"""

from __future__ import annotations

import enum
import logging
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.cols import (
    homogenous_tuple_structure_factory,
    is_mapping,
    is_sequence,
    list_structure_factory,
    mapping_structure_factory,
)
from cattrs.errors import BaseValidationError, ForbiddenExtraKeysError
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn
from cattrs.preconf.msgpack import MsgpackConverter, make_converter

from pistond.errors import InvalidParams
from pistond.models import JobDone

logger = logging.getLogger(__name__)

T = TypeVar("T")

_EXTRA: Final = "\x00extra:"
_PATH: Final = re.compile(r"^(?P<text>.*) @ \$(?P<path>.*)$", re.DOTALL)
_PRIMITIVE_NAMES: Final[dict[type, str]] = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    bytes: "bytes",
    type(None): "nil",
}


class WireTypeError(TypeError):
    """Raised by the converter's strict hooks when a value has the wrong msgpack type."""


def describe_type(tp: Any) -> str:
    """How an error message names a wire type: ``an integer``, ``a string or bytes``, ..."""
    if tp in _PRIMITIVE_NAMES:
        return _PRIMITIVE_NAMES[tp]
    if tp is Any:
        return "any value"
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(describe_type(arg) for arg in get_args(tp))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(arg) for arg in get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(member.value) for member in tp)
    if isinstance(tp, type) and attrs.has(tp):
        return "a map"
    if is_mapping(tp):
        return "a map"
    if is_sequence(tp):
        return "an array"
    return getattr(tp, "__name__", str(tp))


def _is_primitive_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType) and all(
        arg in _PRIMITIVE_NAMES for arg in get_args(tp)
    )


def _matches_primitive(value: Any, tp: type) -> bool:
    if tp is bool:
        return type(value) is bool
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is type(None):
        return value is None
    return isinstance(value, tp)


def _structure_primitive(value: Any, tp: type) -> Any:
    if not _matches_primitive(value, tp):
        raise WireTypeError(f"expected {describe_type(tp)}")
    return float(value) if tp is float else value


def _structure_primitive_union(value: Any, tp: Any) -> Any:
    for arg in get_args(tp):
        if _matches_primitive(value, arg):
            return float(value) if arg is float else value
    raise WireTypeError(f"expected {describe_type(tp)}")


def _strict_sequence_factory(
    converter: cattrs.Converter,
) -> Callable[[Any], Callable[[Any, Any], Any]]:
    def factory(tp: Any) -> Callable[[Any, Any], Any]:
        origin = get_origin(tp) or tp
        if isinstance(origin, type) and issubclass(origin, tuple):
            inner = homogenous_tuple_structure_factory(tp, converter)
        else:
            inner = list_structure_factory(tp, converter)

        def structure(value: Any, _tp: Any) -> Any:
            if not isinstance(value, list | tuple):
                raise WireTypeError("expected an array")
            return inner(value, tp)

        return structure

    return factory


def _strict_mapping_factory(
    converter: cattrs.Converter,
) -> Callable[[Any], Callable[[Any, Any], Any]]:
    def factory(tp: Any) -> Callable[[Any, Any], Any]:
        inner = mapping_structure_factory(tp, converter)

        def structure(value: Any, _tp: Any) -> Any:
            if not isinstance(value, Mapping):
                raise WireTypeError("expected a map")
            return inner(value, tp)

        return structure

    return factory


def _is_nullable(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp)


def _strict_attrs_factory(
    converter: cattrs.Converter,
) -> Callable[[Any], Callable[[Any, Any], Any]]:
    def factory(cls: Any) -> Callable[[Any, Any], Any]:
        inner = make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True)
        nullable = tuple(
            field.name
            for field in attrs.fields(attrs.resolve_types(cls))
            if field.default is attrs.NOTHING and _is_nullable(field.type)
        )

        def structure(value: Any, _tp: Any) -> Any:
            if not isinstance(value, Mapping):
                raise WireTypeError("expected a map")
            missing = [name for name in nullable if name not in value]
            if missing:
                value = {**dict.fromkeys(missing), **value}
            return inner(value, cls)

        return structure

    return factory


def _structure_enum(value: Any, tp: type[enum.Enum]) -> enum.Enum:
    try:
        return tp(value)
    except ValueError:
        raise WireTypeError(f"expected {describe_type(tp)}") from None


def _unstructure_enum(value: enum.Enum) -> Any:
    return value.value


def _is_tuple_or_list(tp: Any) -> bool:
    return is_sequence(tp) and tp not in (str, bytes) and get_args(tp)[-1:] != ()


def make_wire_converter() -> MsgpackConverter:
    """A fresh converter configured like :data:`converter` (for tests and plugins)."""
    wire = make_converter(forbid_extra_keys=True, detailed_validation=True)
    for primitive in _PRIMITIVE_NAMES:
        wire.register_structure_hook(primitive, _structure_primitive)
    wire.register_structure_hook_func(_is_primitive_union, _structure_primitive_union)
    for base in (enum.Enum, enum.StrEnum, enum.IntEnum):
        # By class, so the str and int hooks do not catch str and int enums first.
        wire.register_structure_hook(base, _structure_enum)
        wire.register_unstructure_hook(base, _unstructure_enum)
    wire.register_structure_hook_factory(_is_tuple_or_list, _strict_sequence_factory(wire))
    wire.register_structure_hook_factory(is_mapping, _strict_mapping_factory(wire))
    wire.register_structure_hook_factory(attrs.has, _strict_attrs_factory(wire))
    # job.done carries "error" only when the job failed (PROTOCOL.md).
    wire.register_unstructure_hook(
        JobDone, make_dict_unstructure_fn(JobDone, wire, _cattrs_omit_if_default=True)
    )
    return wire


converter: Final = make_wire_converter()
"""The converter of the RPC wire: use it for every record the daemon sends or receives."""


def _format_exception(exc: BaseException, tp: Any) -> str:
    if isinstance(exc, ForbiddenExtraKeysError):
        return _EXTRA + ",".join(sorted(exc.extra_fields))
    if isinstance(exc, KeyError):
        return "is required"
    if isinstance(exc, InvalidParams):
        return exc.message
    if tp is not None and isinstance(exc, TypeError | ValueError):
        return f"must be {describe_type(tp)}"
    if isinstance(exc, WireTypeError):
        return f"must be {str(exc).removeprefix('expected ')}"
    return "is invalid"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def validation_messages(exc: BaseException) -> list[str]:
    """One ``<path> <problem>`` line per failure in a cattrs validation error."""
    messages: list[str] = []
    for line in cattrs.transform_error(exc, format_exception=_format_exception):
        match = _PATH.match(line)
        text, path = (match["text"], match["path"]) if match else (line, "")
        path = path.removeprefix(".")
        if text.startswith(_EXTRA):
            messages.extend(
                f"{_join(path, name)} is not a known field"
                for name in text.removeprefix(_EXTRA).split(",")
            )
        else:
            messages.append(f"{path or 'params'} {text}")
    return messages


def structure_or_raise(data: Any, cls: type[T]) -> T:
    """Structure wire data into ``cls``, or raise ``invalid_params`` saying what is wrong.

    Raises:
        InvalidParams: a field is missing, unknown or of the wrong type; the message names
            every failure, separated by ``; ``.
    """
    try:
        return converter.structure(data, cls)
    except (BaseValidationError, WireTypeError) as exc:
        messages = validation_messages(exc)
        logger.debug("invalid params for %s: %s", getattr(cls, "__name__", cls), messages)
        raise InvalidParams("; ".join(messages)) from exc
