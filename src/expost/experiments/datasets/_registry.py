"""A name -> factory registry whose options are the factory's keyword arguments.

In the style of torchvision's ``models/_api.py``: a factory is a plain function
with keyword-only options, each with a type hint and a default. The registry
reads the signature, so the config layer can list and check the allowed
options (:meth:`Registry.options`) and a call with an unknown or mistyped
option fails before any work, naming the option and the allowed ones.

The data-set and model registries are two instances of :class:`Registry`.
"""

from __future__ import annotations

import difflib
import inspect
import os
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, Union, get_args, get_origin

import numpy as np

from ..._validation import _error, describe

F = TypeVar("F", bound=Callable[..., Any])

#: The value ``default`` takes in :meth:`Registry.options` for an option without one.
REQUIRED: Any = ...


def _hint_text(hint: Any) -> str:
    """Say in words which values a type hint allows."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_hint_text(a) for a in get_args(hint))
    if origin is Literal:
        return f"one of {get_args(hint)!r}"
    if hint is type(None):
        return "None"
    if hint is Path:
        return "a path"
    if origin in (tuple, list):
        args = get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a sequence of {_hint_text(args[0])}"
        if args:
            return f"a sequence of {len(args)} ({', '.join(_hint_text(a) for a in args)})"
        return "a sequence"
    return getattr(hint, "__name__", str(hint))


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` is allowed by ``hint`` (the simple hints options use)."""
    if hint is Any:
        return True
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in get_args(hint))
    if origin is Literal:
        return any(type(value) is type(a) and value == a for a in get_args(hint))
    if hint is type(None):
        return value is None
    is_bool = isinstance(value, (bool, np.bool_))
    if hint is bool:
        return is_bool
    if hint is int:
        return isinstance(value, (int, np.integer)) and not is_bool
    if hint is float:
        return isinstance(value, (int, float, np.integer, np.floating)) and not is_bool
    if hint is Path:
        return isinstance(value, (str, os.PathLike))
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        args = get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        if args:
            return len(value) == len(args) and all(map(_matches, value, args))
        return True
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _literal_types(hint: Any) -> set[type]:
    """Types of the values a hint's ``Literal`` members allow."""
    if get_origin(hint) is Literal:
        return {type(a) for a in get_args(hint)}
    if get_origin(hint) in (Union, types.UnionType):
        return set().union(*(_literal_types(a) for a in get_args(hint)))
    return set()


class Registry(Generic[F]):
    """Factories by name; options are the factories' keyword-only arguments.

    Parameters
    ----------
    kind : str
        What is registered ("dataset", "model"), for messages.
    reserved : tuple of str
        Keyword arguments every factory takes that are not options (the
        registry's caller passes them: ``seed`` for data sets, ``n_classes``
        and ``input_shape`` for models).
    """

    def __init__(self, kind: str, reserved: tuple[str, ...]) -> None:
        self.kind = kind
        self.reserved = reserved
        self._factories: dict[str, F] = {}
        self._checks: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None, *, overwrite: bool = False,
                 check: Callable[..., Any] | None = None) -> Callable[[F], F]:
        """Decorator registering a factory under ``name`` (default: its ``__name__``).

        ``check``, optional, checks the options' values before anything is built:
        :meth:`check_options` calls it with every option (defaults filled in) and
        it raises ValueError naming the option.
        """

        def decorator(fn: F) -> F:
            key = fn.__name__ if name is None else name
            if not isinstance(key, str) or not key:
                raise TypeError(_error("name", "a non-empty string", describe(key)))
            if key in self._factories and not overwrite:
                raise ValueError(
                    f"A {self.kind} named {key!r} is already registered; "
                    "pass overwrite=True to replace it."
                )
            self._check_signature(key, fn)
            self._factories[key] = fn
            if check is not None:
                self._checks[key] = check
            else:
                self._checks.pop(key, None)
            return fn

        return decorator

    def _check_signature(self, key: str, fn: Callable[..., Any]) -> None:
        params = inspect.signature(fn).parameters
        missing = [r for r in self.reserved if r not in params]
        bad = [
            p.name for p in params.values()
            if p.kind is not inspect.Parameter.KEYWORD_ONLY
        ]
        if missing or bad:
            raise TypeError(
                f"A {self.kind} factory takes keyword-only arguments, including "
                f"{', '.join(self.reserved)}; {key!r} "
                + (f"lacks {missing}" if missing else f"has non-keyword-only {bad}")
                + "."
            )

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._factories)

    def get(self, name: str) -> F:
        """The factory registered as ``name``; ValueError listing the names otherwise."""
        if not isinstance(name, str):
            raise TypeError(_error("name", f"a {self.kind} name (a string)", describe(name)))
        try:
            return self._factories[name]
        except KeyError:
            raise ValueError(
                _error("name", f"one of the registered {self.kind}s {tuple(self.names())}",
                       describe(name))
            ) from None

    def options(self, name: str) -> dict[str, tuple[Any, Any]]:
        """``{option: (type hint, default)}`` for the factory ``name``.

        The pairs are in the form :func:`pydantic.create_model` takes; an option
        without a default has ``REQUIRED`` (``...``) as its default.
        """
        fn = self.get(name)
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # an annotation that cannot be evaluated: accept any value
            hints = {}
        out: dict[str, tuple[Any, Any]] = {}
        for p in inspect.signature(fn).parameters.values():
            if p.name in self.reserved:
                continue
            default = REQUIRED if p.default is inspect.Parameter.empty else p.default
            out[p.name] = (hints.get(p.name, Any), default)
        return out

    def check_options(self, name: str, options: Mapping[str, Any]) -> None:
        """Reject unknown options (TypeError) and values of the wrong type.

        A value of the wrong type raises TypeError; a value of the right type
        outside a ``Literal`` choice raises ValueError. Both name the option, the allowed
        values and the value that arrived.
        """
        allowed = self.options(name)
        listing = ", ".join(f"{k}: {_hint_text(h)} = {d!r}" for k, (h, d) in allowed.items()) or "none"
        for key, value in options.items():
            if key not in allowed:
                close = difflib.get_close_matches(key, list(allowed), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise TypeError(
                    f"Unknown option {key!r} for the {self.kind} {name!r}; "
                    f"allowed options: {listing}.{hint}"
                )
            hint_type = allowed[key][0]
            if not _matches(value, hint_type):
                exc = ValueError if type(value) in _literal_types(hint_type) else TypeError
                raise exc(_error(key, _hint_text(hint_type), describe(value))[:-1]
                          + f" (option {key!r} of the {self.kind} {name!r}; allowed options: {listing}).")
        absent = [k for k, (_, d) in allowed.items() if d is REQUIRED and k not in options]
        if absent:
            raise TypeError(f"The {self.kind} {name!r} needs the option(s) {absent}.")
        if name in self._checks:
            full = {k: d for k, (_, d) in allowed.items() if d is not REQUIRED}
            self._checks[name](**{**full, **options})
