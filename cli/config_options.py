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
import typing
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from dftlens.config_files import RUN_CONFIG, field_types, read_run_config, renamed_settings, write_run_config
from dftlens.errors import DftlensError

from .field_options import FieldOption, coerce_value, optional_type

_EXPLICIT = ("COMMANDLINE", "ENVIRONMENT", "PROMPT")
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


def _own_options(func: Callable, n_configs: int) -> tuple[list[str], list[inspect.Parameter], dict[str, Any]]:
    """The command function's config parameter names, its own options, and their resolved types."""
    sig = inspect.signature(func)
    hints = typing.get_type_hints(func)
    params = list(sig.parameters.values())
    config_names, rest = [p.name for p in params[:n_configs]], params[n_configs:]
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation))
           for p in rest if p.name != "settings"]
    return config_names, own, {p.name: hints.get(p.name, Any) for p in rest}


@dataclasses.dataclass
class OptionTable:
    """The fields of a verb's config classes and the command-line option generated for each.

    ``fields``/``owner``/``types``: every field by name, the index of its class in ``classes`` and its
    resolved type; ``options``: the fields that are options (not excluded, not ``cli=False``);
    ``defaults``: the verb's own defaults (field values).
    """

    classes: tuple[type, ...]
    fields: dict[str, dataclasses.Field]
    owner: dict[str, int]
    types: dict[str, Any]
    options: dict[str, FieldOption]
    defaults: dict[str, Any]

    @classmethod
    def build(cls, classes: tuple[type, ...], exclude: tuple[str, ...], defaults: dict[str, Any],
              helps: dict[str, str]) -> "OptionTable":
        """The table of ``classes`` (see :func:`config_options`); TypeError when two classes share a field."""
        types_: dict[str, Any] = {}
        fields: dict[str, dataclasses.Field] = {}
        owner: dict[str, int] = {}
        for i, config_cls in enumerate(classes):
            for field in _own_fields_first(config_cls):
                if field.name in fields:
                    raise TypeError(f"{field.name} is a field of {config_cls.__name__} and of "
                                    f"{classes[owner[field.name]].__name__}")
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
        return cls(tuple(classes), fields, owner, types_, options, defaults)

    def read_file(self, path: Path | None, verb: str | None, own: set[str]) -> dict[str, Any]:
        """The ``--config`` file's mapping, old option names renamed (``formerly``); {} without a file.

        Raises DftlensError for an option neither a field nor one of the verb's ``own`` options.
        """
        given = read_run_config(path) if path is not None else {}
        for config_cls in self.classes:  # old option names in saved configs (``formerly``)
            given = renamed_settings(config_cls, given)
        unknown = sorted(set(given) - set(self.fields) - own)
        if unknown:
            raise DftlensError(f"Config file {path}: unknown option(s) {', '.join(unknown)} for dftlens {verb}.")
        return given

    def values(self, kwargs: dict[str, Any], given: dict[str, Any], explicit: Callable[[str], bool],
               where_file: str) -> dict[str, Any]:
        """Each field's value: a flag given wins over the file, the file over the verb's own default.

        Fields left out are absent (their dataclass default applies); fields that are not options take
        the file's value. Every value is checked and converted (:meth:`FieldOption.value`).
        """
        values: dict[str, Any] = {}
        for name, option in self.options.items():
            flag = option.decls[0].split("/")[0]
            if explicit(name):
                values[name] = option.value(kwargs[name], flag)
            elif name in given:
                values[name] = option.value(given[name], f"{where_file}: {name}")
            elif name in self.defaults:
                values[name] = self.defaults[name]
        for name in set(given) & (set(self.fields) - set(self.options)):  # settings only files set
            tp, optional = optional_type(self.types[name])
            values[name] = None if given[name] is None and optional else coerce_value(given[name], tp,
                                                                                 f"{where_file}: {name}")
        return values

    def builders(self, values: dict[str, Any]) -> list[Callable[..., Any]]:
        """One ``build(**overrides)`` per class: the config from ``values`` (its own fields) and ``overrides``."""
        def build(i: int, cls: type) -> Callable[..., Any]:
            return lambda **overrides: cls(**{**{k: v for k, v in values.items() if self.owner[k] == i}, **overrides})

        return [build(i, cls) for i, cls in enumerate(self.classes)]


def _own_fields_first(config_cls: type) -> list[dataclasses.Field]:
    """The fields of ``config_cls``: its own (in its order; a field it redefines among them) before inherited ones.

    So ``TrainConfig(LoadSettings)`` lists ``--out``, ``--model`` ... before ``--device``, as the verbs that
    take ``LoadSettings`` as a second class do.
    """
    own = list(config_cls.__dict__.get("__annotations__", {}))
    fields = dataclasses.fields(config_cls)
    return sorted(fields, key=lambda f: (0, own.index(f.name)) if f.name in own else (1, 0))


def _own_values(own: list[inspect.Parameter], own_types: dict[str, Any], kwargs: dict[str, Any],
                given: dict[str, Any], explicit: Callable[[str], bool], where_file: str) -> dict[str, Any]:
    """The verb's own options: the command line's value unless only the ``--config`` file sets it."""
    values = {}
    for p in own:
        if not explicit(p.name) and p.name in given:
            tp, _ = optional_type(own_types[p.name])
            values[p.name] = None if given[p.name] is None else coerce_value(given[p.name], tp, f"{where_file}: {p.name}")
        else:
            values[p.name] = kwargs[p.name]
    return values


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
    table = OptionTable.build(config_classes, exclude, dict(defaults or {}), dict(helps or {}))

    def decorate(func: Callable) -> Callable:
        config_names, own, own_types = _own_options(func, len(config_classes))
        wants_settings = "settings" in inspect.signature(func).parameters
        clash = {p.name for p in own} & set(table.fields)
        if clash:
            raise TypeError(f"{func.__name__}: {', '.join(sorted(clash))} are config fields too")
        config_param = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                                         default=typer.Option(None, "--config", help=CONFIG_HELP))
        ctx_param = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        params = [ctx_param, *(o.parameter() for o in table.options.values()), *own, config_param]

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            ctx: typer.Context = kwargs.pop("ctx")
            path = kwargs.pop("config")
            given = table.read_file(path, ctx.info_name, {p.name for p in own})
            where_file = f"Config file {path}"

            def explicit(name: str) -> bool:
                source = ctx.get_parameter_source(name)
                return source is not None and source.name in _EXPLICIT

            values = table.values(kwargs, given, explicit, where_file)
            own_values = _own_values(own, own_types, kwargs, given, explicit, where_file)
            builders = table.builders(values)
            configs = builders if lazy else [make() for make in builders]
            extra = {}
            if wants_settings:
                saved = dict(values) if lazy else {f: getattr(configs[table.owner[f]], f) for f in table.fields}
                saved.update({k: v for k, v in own_values.items() if k not in not_saved})
                explicit_names = {n for n in [*table.options, *(p.name for p in own)] if explicit(n)}
                extra["settings"] = RunSettings(ctx.info_name or func.__name__, saved,
                                                explicit_names | (set(given) & set(saved)))
            return func(**dict(zip(config_names, configs)), **own_values, **extra)

        command.__signature__ = inspect.Signature(params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__  # typer must see the generated signature, not func's
        return command

    return decorate
