"""Command-line options generated from a config dataclass, as TRL's and tuned-lens's parsers do.

A verb declares its settings once, as fields of a dataclass with their help, choices
and defaults (:func:`dftlens.config_files.setting`), and writes only what is its own::

    @app.command()
    @user_errors
    @config_options(EvalConfig)
    def evaluate(cfg: EvalConfig, out: Optional[Path] = typer.Option(None, help="..."),
                 settings: RunSettings = None) -> None:
        ...
        settings.save(out)                       # out/run_config.yaml

Every field becomes an option (``max_items`` -> ``--max-items``; a bool ``--x/--no-x``);
the verb's own parameters stay options as they are; ``--config FILE`` fills any of
them from a YAML mapping (:mod:`dftlens.config_files`), and flags given on the command
line override the file. The command function receives the built config first and
``settings`` (a :class:`RunSettings`: every value the run used) if it asks for it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from dftlens.config_files import RUN_CONFIG, field_types, read_run_config, renamed_settings, shown, write_run_config
from dftlens.errors import DftlensError

_EXPLICIT = ("COMMANDLINE", "ENVIRONMENT", "PROMPT")
_SCALARS = (bool, int, float, str)
CONFIG_HELP = "YAML file of option values (e.g. a run's run_config.yaml); flags given here override it."


@dataclasses.dataclass
class RunSettings:
    """Every option value a run used, by option name: what ``run_config.yaml`` holds."""

    verb: str
    values: dict[str, Any]
    given: set[str] = dataclasses.field(default_factory=set)  # options set by a flag or the --config file

    def save(self, out_dir: str | Path) -> Path:
        """Write ``<out_dir>/run_config.yaml``; ``dftlens <verb> --config`` on it reruns the run."""
        return write_run_config(Path(out_dir) / RUN_CONFIG, self.values, self.verb)


def _optional(tp: Any) -> tuple[Any, bool]:
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
        base, optional = _optional(tp)
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
        kind = _list_kind(_optional(self.type)[0])
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
            value = _coerce(raw, _optional(self.type)[0], where)
        if self.choices and value not in self.choices:
            raise DftlensError(f"{where} must be one of {', '.join(map(str, self.choices))}, not {shown(value)}.")
        return value


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """A config-file value as the option's type (ints for floats, strings for paths)."""
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


def _own_options(func: Callable, n_configs: int) -> tuple[list[str], list[inspect.Parameter], dict[str, Any]]:
    """The command function's config parameter names, its own options, and their resolved types."""
    sig = inspect.signature(func)
    hints = typing.get_type_hints(func)
    params = list(sig.parameters.values())
    config_names, rest = [p.name for p in params[:n_configs]], params[n_configs:]
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation))
           for p in rest if p.name != "settings"]
    return config_names, own, {p.name: hints.get(p.name, Any) for p in rest}


def config_options(*config_classes: type, exclude: tuple[str, ...] = (), defaults: dict[str, Any] | None = None,
                   helps: dict[str, str] | None = None, not_saved: tuple[str, ...] = ("overwrite",),
                   lazy: bool = False) -> Callable[[Callable], Callable]:
    """Generate a command's options from the fields of ``config_classes`` (see the module docstring).

    With several classes (``@config_options(ProbeConfig, LoadSettings)``) the command
    function takes one built config per class, in that order; their field names must
    differ, and run_config.yaml holds all of them in one flat mapping.

    ``exclude``: fields that are not options (they keep their dataclass default,
    unless a config file sets them). ``defaults``: this verb's own defaults for some
    fields, as field values (``{"max_items": 40}``). ``helps``: this verb's own help
    text for some fields. ``lazy``: the command gets, instead of each built config, a
    function ``build(**overrides)`` that builds it (for a verb that may not need it, or
    needs other values first: ``train --resume``); ``settings.values`` then holds the
    values given, not the defaults. ``not_saved``: own options left out of run_config.yaml (they
    say how to run, not what).
    """
    defaults, helps = dict(defaults or {}), dict(helps or {})
    types_: dict[str, Any] = {}
    fields: dict[str, dataclasses.Field] = {}
    owner: dict[str, int] = {}  # field name -> index of its config class
    for i, config_cls in enumerate(config_classes):
        for field in dataclasses.fields(config_cls):
            if field.name in fields:
                raise TypeError(f"{field.name} is a field of {config_cls.__name__} and of "
                                f"{config_classes[owner[field.name]].__name__}")
            fields[field.name], owner[field.name] = field, i
        types_.update(field_types(config_cls))
    options: dict[str, FieldOption] = {}
    for name, field in fields.items():
        if name in exclude or field.metadata.get("cli") is False:
            continue
        if name in defaults:
            default = defaults[name]
        elif field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = None
        options[name] = FieldOption.from_field(field, types_[name], default, helps.get(name))

    def decorate(func: Callable) -> Callable:
        config_names, own, own_types = _own_options(func, len(config_classes))
        wants_settings = "settings" in inspect.signature(func).parameters
        clash = {p.name for p in own} & set(fields)
        if clash:
            raise TypeError(f"{func.__name__}: {', '.join(sorted(clash))} are config fields too")
        config_param = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                                         default=typer.Option(None, "--config", help=CONFIG_HELP))
        ctx_param = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        params = [ctx_param, *(o.parameter() for o in options.values()), *own, config_param]

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            ctx: typer.Context = kwargs.pop("ctx")
            path = kwargs.pop("config")
            given = read_run_config(path) if path is not None else {}
            for config_cls in config_classes:  # old option names in saved configs (``formerly``)
                given = renamed_settings(config_cls, given)
            where_file = f"Config file {path}"
            unknown = sorted(set(given) - set(fields) - {p.name for p in own})
            if unknown:
                raise DftlensError(f"{where_file}: unknown option(s) {', '.join(unknown)} for dftlens "
                                   f"{ctx.info_name}.")

            def explicit(name: str) -> bool:
                source = ctx.get_parameter_source(name)
                return source is not None and source.name in _EXPLICIT

            values: dict[str, Any] = {}
            for name, option in options.items():
                flag = option.decls[0].split("/")[0]
                if explicit(name):
                    values[name] = option.value(kwargs[name], flag)
                elif name in given:
                    values[name] = option.value(given[name], f"{where_file}: {name}")
                elif name in defaults:
                    values[name] = defaults[name]
            for name in set(given) & (set(fields) - set(options)):  # settings only files set
                tp, optional = _optional(types_[name])
                values[name] = None if given[name] is None and optional else _coerce(given[name], tp,
                                                                                     f"{where_file}: {name}")
            own_values = {}
            for p in own:
                if not explicit(p.name) and p.name in given:
                    tp, _ = _optional(own_types[p.name])
                    own_values[p.name] = None if given[p.name] is None else _coerce(given[p.name], tp,
                                                                                    f"{where_file}: {p.name}")
                else:
                    own_values[p.name] = kwargs[p.name]
            def build(i: int, cls: type) -> Callable[..., Any]:
                return lambda **overrides: cls(**{**{k: v for k, v in values.items() if owner[k] == i}, **overrides})

            builders = [build(i, cls) for i, cls in enumerate(config_classes)]
            configs = builders if lazy else [make() for make in builders]
            extra = {}
            if wants_settings:
                saved = dict(values) if lazy else {f: getattr(configs[owner[f]], f) for f in fields}
                saved.update({k: v for k, v in own_values.items() if k not in not_saved})
                explicit_names = {n for n in [*options, *(p.name for p in own)] if explicit(n)}
                extra["settings"] = RunSettings(ctx.info_name or func.__name__, saved,
                                                explicit_names | (set(given) & set(saved)))
            return func(**dict(zip(config_names, configs)), **own_values, **extra)

        command.__signature__ = inspect.Signature(params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__  # typer must see the generated signature, not func's
        return command

    return decorate
