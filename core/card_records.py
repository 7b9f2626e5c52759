"""The frozen record type the model card's parts are built from (core/card.py), and its JSON codec.

A record knows some keys of its JSON object as typed fields and keeps every other key in ``extra``, in
the order the object had them, so that ``to_dict(from_dict(d)) == d`` holds key for key and in order:
a family may add facts to its card that no stage reads, and reading and rewriting the card keeps them.
Free-form sub-objects (a parity case, the optimisation report) stay JSON mappings: their content differs
per writer and no stage branches on their layout.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar, Mapping


class CardError(ValueError):
    """A card that is missing, malformed, or does not describe the ONNX graph beside it."""


def plain(value: Any) -> Any:
    """A JSON-ready copy of a field value: records and tensor specs as dicts, tuples as lists."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


@dataclass(frozen=True, kw_only=True)
class CardRecord:
    """Base of the card's records. Subclasses declare typed fields; ``DECODE`` maps a field name to the
    function that builds its value from JSON (default: a deep copy of the JSON value)."""

    # Keys of the JSON object that are not typed fields, in their original order.
    extra: Mapping[str, Any] = field(default_factory=dict)
    # The JSON object's key order, so that writing a card back keeps its layout.
    key_order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    DECODE: ClassVar[dict[str, Callable[[Any, str], Any]]] = {}
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def typed_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name not in ("extra", "key_order")]

    @classmethod
    def from_dict(cls, d: Any, where: str = "card") -> Any:
        if not isinstance(d, Mapping):
            raise CardError(f"{where}: expected a JSON object, got {type(d).__name__}")
        names = cls.typed_names()
        missing = [k for k in cls.REQUIRED if k not in d]
        if missing:
            raise CardError(f"{where} has no {missing[0]!r} entry")
        kwargs: dict[str, Any] = {}
        for name in names:
            if name in d:
                decode = cls.DECODE.get(name)
                value = d[name]
                try:
                    kwargs[name] = copy.deepcopy(value) if decode is None or value is None else decode(value, f"{where}.{name}")
                except CardError:
                    raise
                except (TypeError, ValueError, KeyError) as exc:
                    raise CardError(f"{where}.{name}: malformed entry {value!r:.200} ({exc})") from None
        extra = {k: copy.deepcopy(v) for k, v in d.items() if k not in names}
        return cls(**kwargs, extra=extra, key_order=tuple(d))

    def to_dict(self) -> dict[str, Any]:
        names = self.typed_names()
        order = list(self.key_order)
        order += [n for n in names if n not in order and getattr(self, n) is not None]
        order += [k for k in self.extra if k not in order]
        out: dict[str, Any] = {}
        for key in order:
            if key in names:
                out[key] = plain(getattr(self, key))
            elif key in self.extra:
                out[key] = copy.deepcopy(self.extra[key])
        return out


def many(decode: Callable[[Any, str], Any]) -> Callable[[Any, str], tuple[Any, ...]]:
    """Decode a JSON list into a tuple, element by element."""

    def run(value: Any, where: str) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise CardError(f"{where}: expected a list, got {type(value).__name__}")
        return tuple(decode(v, f"{where}[{i}]") for i, v in enumerate(value))

    return run


def record(cls: type) -> Callable[[Any, str], Any]:
    return lambda value, where: cls.from_dict(value, where)
