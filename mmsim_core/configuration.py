"""Typed configs: each field declared once, merged and overridden by one mechanism.

* A component's config is a dataclass (field, default, docstring, validation in ``__post_init__``). The
  model class declares it with :func:`config_init`, which gives the model an ``__init__`` whose keyword
  arguments ARE the dataclass fields: diffusers' ``ConfigMixin`` reads that signature, writes the fields to
  ``config.json`` and passes them back on ``from_pretrained``. Nothing is written twice.
* Overrides (preset variants, config files that extend another, ``--set a.b=value`` on the command line)
  are nested dicts, combined by :func:`nested_update` and applied to a dataclass by :func:`apply_overrides`,
  which names the full path of a key that does not exist.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
import typing
from typing import Callable, TypeVar

T = TypeVar("T")


# ----------------------------------------------------------------------------------------------
# Dataclass configs <-> JSON-able dicts
# ----------------------------------------------------------------------------------------------
def to_dict(config) -> dict:
    """A dataclass config as plain JSON-able values (tuples become lists, nested configs dicts)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _dataclass_type(annotation) -> type | None:
    """The dataclass in an annotation like ``Foo``, ``Foo | None`` or ``Optional[Foo]``, else None."""
    if dataclasses.is_dataclass(annotation):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if dataclasses.is_dataclass(arg):
                return arg
    return None


def nested_update(base: dict, over: dict) -> dict:
    """``base`` with ``over`` merged in, section by section (a dict value updates a dict value)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = nested_update(out[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(config: T, overrides: dict, where: str | None = None) -> T:
    """``config`` (a dataclass) with ``overrides`` (a nested dict) applied and validated.

    A dict for a nested config field updates that config (building it from its defaults when it was None);
    an unknown key raises ``ValueError`` naming its full path and the keys that exist."""
    where = where or type(config).__name__
    hints = typing.get_type_hints(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    changes = {}
    for key, value in overrides.items():
        if key not in names:
            raise ValueError(f"{where} has no field {key!r}; fields are {sorted(names)}")
        current = getattr(config, key)
        nested = _dataclass_type(hints.get(key))
        if isinstance(value, dict) and nested is not None:
            base = current if current is not None else nested()
            value = apply_overrides(base, value, f"{where}.{key}")
        changes[key] = value
    return dataclasses.replace(config, **changes)


def from_dict(config_class: type[T], values: dict, where: str | None = None) -> T:
    """Build ``config_class`` from a (possibly partial) nested dict of its fields."""
    return apply_overrides(config_class(), values, where or config_class.__name__)


def parse_assignments(assignments, option: str = "--set") -> dict:
    """``["a.b=1", "c=text"]`` -> ``{"a": {"b": 1}, "c": "text"}``; values are JSON when they parse as JSON,
    bare strings otherwise. ``option`` names the flag in error messages."""
    out: dict = {}
    for assignment in assignments:
        if "=" not in assignment:
            raise ValueError(f"{option} expects key=value, got {assignment!r}")
        key, text = assignment.split("=", 1)
        parts = [p for p in key.strip().split(".")]
        if not all(parts):
            raise ValueError(f"{option} {assignment!r}: empty key part")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"{option} {assignment!r}: {p!r} is set to a value and a section at once")
        node[parts[-1]] = value
    return out


# ----------------------------------------------------------------------------------------------
# Models whose __init__ signature is their config dataclass
# ----------------------------------------------------------------------------------------------
def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return inspect.Parameter.empty


def config_init(config_class: type) -> Callable[[type], type]:
    """Class decorator for a ``ModelMixin`` + ``ConfigMixin`` whose ``__init__(self, config)`` takes a
    ``config_class`` instance: the class gets an ``__init__(self, *, field=default, ...)`` with exactly the
    dataclass's fields, registers the validated values to ``self.config`` (what ``save_pretrained`` writes)
    and keeps the typed config as ``self.cfg``. ``Model.from_config_object(cfg)`` builds from a dataclass."""
    fields = dataclasses.fields(config_class)
    signature = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=_default(f)) for f in fields]
    )

    def decorate(model_class: type) -> type:
        build = model_class.__init__

        def __init__(self, **kwargs):
            kwargs = {k: v for k, v in kwargs.items() if not k.startswith("_")}  # diffusers' private keys
            try:
                cfg = config_class(**kwargs)
            except TypeError as e:  # an unknown field
                raise ValueError(f"{model_class.__name__}: {e}") from None
            self.register_to_config(**to_dict(cfg))
            build(self, cfg)

        __init__.__signature__ = signature
        __init__.__doc__ = build.__doc__
        __init__.__qualname__ = f"{model_class.__qualname__}.__init__"
        model_class.__init__ = __init__
        model_class.config_class = config_class
        model_class.from_config_object = classmethod(lambda cls, cfg: cls(**to_dict(cfg)))
        return model_class

    return decorate


__all__ = ["apply_overrides", "config_init", "from_dict", "nested_update", "parse_assignments", "to_dict"]
