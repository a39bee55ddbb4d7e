"""One config dataclass field as a command-line option: its typer declaration, and values checked into it.

:class:`FieldOption` is what :mod:`.config_options` generates for each field (from its
``setting(...)`` metadata: help, choices, flag, ``none_as``, ``parse``/``show``, ``repeat``);
:func:`coerce_value` checks a ``--config`` file's value against the field's type.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from dftlens.config_files import shown
from dftlens.errors import DftlensError

_SCALARS = (bool, int, float, str)


def optional_type(tp: Any) -> tuple[Any, bool]:
    """``T | None`` -> (T, True); anything else -> (tp, False)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _pairs_text(pairs) -> str:
    return ",".join(f"{a}:{b}" for a, b in pairs)


def _list_kind(tp: Any) -> str | None:
    if typing.get_origin(tp) is not list:
        return None
    (item,) = typing.get_args(tp) or (Any,)
    if item is str:
        return "list"
    if typing.get_origin(item) is tuple and typing.get_args(item) == (str, str):
        return "pairs"
    return None


@dataclasses.dataclass
class FieldOption:
    """How one dataclass field appears on the command line and in config files."""

    name: str
    type: Any  # the field's resolved type
    cli_type: Any  # the annotation typer sees
    default: Any  # the command-line default (typer's), in command-line form
    decls: tuple[str, ...]
    help: str
    parse: Callable[[Any], Any] | None = None  # command-line or YAML value -> field value
    choices: tuple | None = None
    none_as: Any = None
    optional: bool = False

    @classmethod
    def from_field(cls, field: dataclasses.Field, tp: Any, default: Any, help: str | None = None
                   ) -> "FieldOption":
        """The option for one config dataclass field, from its ``setting(...)`` metadata.

        ``tp`` is the field's resolved type, ``default`` its default value and ``help`` overrides the
        metadata's help text. Lists of languages and of language pairs become comma-separated
        text options (or repeatable ones with ``repeat=True``); ``none_as`` and ``show`` decide the
        default shown on the command line.

        Raises:
            TypeError: a field type the command line cannot express without
                ``cli_type``/``parse``/``show`` metadata.
        """
        meta = dict(field.metadata)
        if help is not None:
            meta["help"] = help
        base, optional = optional_type(tp)
        none_as = meta.get("none_as")
        parse, show = meta.get("parse"), meta.get("show")
        kind = _list_kind(base)
        if "cli_type" in meta:
            cli_type = meta["cli_type"]
        elif kind is not None:
            from dftlens.data.languages import parse_pairs, split_list

            cli_type = typing.List[str] if meta.get("repeat") else str
            if kind == "pairs":
                parse, show = parse or (lambda v: parse_pairs(v, what="--" + field.name.replace("_", "-") + " entry")), \
                    show or _pairs_text
            else:
                parse, show = parse or (lambda v: split_list(v) or (None if optional else [])), show or ",".join
        elif base in _SCALARS or base is Path:
            cli_type = base
        else:
            raise TypeError(f"{field.name}: give its command-line form with cli_type/parse/show metadata ({tp}).")
        if none_as is not None:
            shown = none_as if default is None else (show(default) if show else default)
        elif default is None:
            shown = None
        elif meta.get("repeat"):  # a repeatable option (--model a --model b), commas also work
            shown = [show(default)] if show else list(default)
        else:
            shown = show(default) if show else default
        if shown is None and cli_type is not bool:
            cli_type = Optional[cli_type]
        flag = meta.get("flag")
        name = "--" + field.name.replace("_", "-")
        if flag is not None:
            decls = (flag,) if isinstance(flag, str) else tuple(flag)
        else:
            decls = (f"{name}/--no-{name[2:]}",) if cli_type is bool else (name,)
        decls += tuple(meta.get("short", ()))
        help_text = meta.get("help", "")
        choices = tuple(meta["choices"]) if meta.get("choices") else None
        if choices:
            help_text = f"{help_text} One of: {', '.join(map(str, choices))}.".strip()
        return cls(field.name, tp, cli_type, shown, decls, help_text, parse, choices, none_as, optional)

    def expected(self) -> str:
        """What a value of this option looks like, for messages: "language pairs such as fr:zh" ..."""
        kind = _list_kind(optional_type(self.type)[0])
        if kind == "pairs":
            return "language pairs such as fr:zh (text, or a list of [input, target] pairs)"
        if kind == "list":
            return "a list of names (or comma-separated text)"
        return f"text as on the command line (see `{self.decls[0].split('/')[0]} --help`)"

    def parameter(self) -> inspect.Parameter:
        """A keyword-only ``inspect.Parameter`` holding the ``typer.Option``, for a generated signature."""
        option = typer.Option(self.default, *self.decls, help=self.help)
        return inspect.Parameter(self.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=self.cli_type)

    def value(self, raw: Any, where: str) -> Any:
        """The field value for a command-line or config-file value (checked, converted).

        ``where`` names the value in messages: ``--max-items`` or ``Config file x.yaml: max_items``.
        """
        if raw is None or (self.none_as is not None and raw == self.none_as):
            if not self.optional:
                raise DftlensError(f"{where} needs a value.")
            return None
        if self.parse:
            try:
                value = self.parse(raw)
            except (TypeError, ValueError, AttributeError, IndexError):  # a YAML value of the wrong shape
                raise DftlensError(f"{where} must be {self.expected()}, not {shown(raw)}.") from None
        else:
            value = coerce_value(raw, optional_type(self.type)[0], where)
        if self.choices and value not in self.choices:
            raise DftlensError(f"{where} must be one of {', '.join(map(str, self.choices))}, not {shown(value)}.")
        return value


def coerce_value(value: Any, tp: Any, where: str) -> Any:
    """A config-file value as the option's type (ints for floats, strings for paths).

    ``where`` names the value in messages. Raises DftlensError when the value cannot be one.
    """
    if tp is Path:
        if isinstance(value, str) and value:
            return Path(value)
        raise DftlensError(f"{where} must be a path (text), not {shown(value)}.")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 2e-5 as a string
        try:
            return float(value)
        except ValueError:
            pass
    if typing.get_origin(tp) is list and isinstance(value, str):
        return [value]
    if tp in _SCALARS and not (isinstance(value, tp) and (tp is bool or not isinstance(value, bool))):
        raise DftlensError(f"{where} must be {_NAMES[tp]}, not {shown(value)}.")
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list) or (item in _SCALARS and not all(isinstance(v, item) for v in value)):
            raise DftlensError(f"{where} must be a list of {_NAMES.get(item, 'values')}, not {shown(value)}.")
    return value


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
