"""CLI options made from a config's fields: the flags, their help and defaults come from
:mod:`kerascnn.config`, and only the options the user typed are forwarded to it."""

from __future__ import annotations

import argparse
import ast
import dataclasses
from typing import Any, NoReturn

from kerascnn.config import Option


class UsageError(Exception):
    """A bad command line: reported on one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def pair(text: str) -> tuple[str, Any]:
    """Parses ``KEY=VALUE`` with a Python-literal value (``width=32``, ``layout=(1,1,2)``).

    Example:
        >>> pair("width=32"), pair("batch_norm=true"), pair("stem=small")
        (('width', 32), ('batch_norm', True), ('stem', 'small'))
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    words = {"true": True, "false": False, "none": None}
    if raw.lower() in words:
        return key, words[raw.lower()]
    try:
        return key, ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return key, raw


def pairs(flag: str, items: list[tuple[str, Any]]) -> dict[str, Any]:
    """Repeated ``KEY=VALUE`` options as a dict; a key given twice with two values is refused
    (the last would silently win).

    Example:
        >>> pairs("-o", [("width", 32), ("dropout", 0.1)])
        {'width': 32, 'dropout': 0.1}
    """
    out: dict[str, Any] = {}
    for key, value in items:
        if key in out and out[key] != value:
            raise UsageError(f"{flag} sets {key} twice ({out[key]!r}, then {value!r}). Received: {key}={value!r}")
        out[key] = value
    return out


def _default_text(field: dataclasses.Field, option: Option) -> str:
    default = field.default
    if (
        any(default is nothing for nothing in (None, False, dataclasses.MISSING))
        or default == ""
        or isinstance(default, dict)
    ):
        return ""
    if option.kind == "off" or "default" in option.help:  # `--no-tracking` turns off a True; help says it
        return ""
    return f" (default: {default})"


def add_config_options(parser: argparse.ArgumentParser, config: type, skip: tuple[str, ...] = ()) -> None:
    """Adds one option per field of ``config`` (a dataclass of ``Option``-annotated fields)."""
    groups: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        if field.name in skip:
            continue
        option: Option = field.metadata["option"]
        group = groups.get(option.group)
        if group is None:
            group = parser if option.group == "options" else parser.add_argument_group(option.group)
            groups[option.group] = group
        _add(group, field.name, option, option.help + _default_text(field, option))


def _flag(name: str, option: Option) -> str:
    return option.flag or f"--{name.replace('_', '-')}"


def _add(group: Any, name: str, option: Option, help: str) -> None:
    flag = _flag(name, option)
    common: dict[str, Any] = dict(dest=name, default=argparse.SUPPRESS, help=help)
    kind = option.kind
    if kind == "positional":
        group.add_argument(name, nargs="?", default=argparse.SUPPRESS, metavar=option.metavar, help=help)
    elif kind == "value":
        placeholders: dict[Any, str] = {int: "N", float: "X"}
        metavar = option.metavar or placeholders.get(option.type) or name.rsplit("_", maxsplit=1)[-1].upper()
        group.add_argument(flag, type=option.type, metavar=metavar, **common)
    elif kind == "flag":
        group.add_argument(flag, action="store_true", **common)
    elif kind == "off":
        group.add_argument(flag, action="store_false", **common)
    elif kind == "switch":  # --jit / --no-jit
        group.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
    elif kind == "shape":
        group.add_argument(flag, nargs=3, type=int, metavar=option.metavar, **common)
    elif kind == "pairs":
        group.add_argument(flag, action="append", type=pair, metavar=option.metavar, **common)
    elif kind == "optional":
        group.add_argument(flag, nargs="?", const=True, metavar=option.metavar, **common)
    else:
        raise AssertionError(f"unknown option kind {kind!r}")


def typed_settings(args: argparse.Namespace, config: type) -> dict[str, Any]:
    """The settings the user typed, converted to the config's types."""
    settings = {}
    for field in dataclasses.fields(config):
        if not hasattr(args, field.name):
            continue
        value = getattr(args, field.name)
        option = field.metadata["option"]
        kind = option.kind
        settings[field.name] = (
            pairs(_flag(field.name, option), value) if kind == "pairs" else tuple(value) if kind == "shape" else value
        )
    return settings
