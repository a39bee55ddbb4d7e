"""Run settings as YAML files: what ``--config run.yaml`` reads and every run writes.

A run config is one flat YAML mapping from option names (``snake_case``, as in the
config dataclasses: ``max_items``, ``lora_r``) to values, e.g.::

    # dftlens train, written by dftlens 0.1.0; rerun: dftlens train --config run_config.yaml
    model: gemma3-270m
    steps: 100
    pairs: [[fr, zh], [de, ja]]

:func:`read_run_config` reads one (JSON is YAML too), :func:`write_run_config` writes
one atomically; ``dftlens <verb> --config FILE`` fills the verb's options from it
and command-line flags override it (see ``dftlens_cli.config_options``).
"""

from __future__ import annotations

import dataclasses
import typing
from importlib.metadata import version
from pathlib import Path
from typing import Any, Mapping

from .errors import DataError, DftlensError

RUN_CONFIG = "run_config.yaml"
MAX_CONFIG_BYTES = 1 << 20  # a run config is a few hundred bytes; this bounds what one may hold


class _Alias(Exception):
    pass


def _loader():
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        """PyYAML's safe loader refusing aliases (``*name``): a few hundred bytes of them expand to gigabytes."""

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                raise _Alias(self.peek_event().start_mark.line + 1)
            return super().compose_node(parent, index)

    return NoAliasLoader


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for messages (never a whole large value)."""
    import reprlib

    short = reprlib.Repr()
    short.maxstring = short.maxother = limit
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = 4
    short.maxlevel = 2
    text = short.repr(value)
    return text if len(text) <= limit + 10 else text[:limit] + "..."


def read_run_config(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML (or JSON) run config.

    Bounded: at most :data:`MAX_CONFIG_BYTES`, no YAML aliases (``*name``, which expand a short
    file into gigabytes), safe tags only.

    Raises:
        DftlensError: the file does not exist, cannot be read, is larger than the bound, is not
            UTF-8, uses an alias, is not valid YAML, or is not a mapping.
    """
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise DftlensError(f"Config file {path} does not exist.")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise DftlensError(f"Config file {path} is larger than {MAX_CONFIG_BYTES >> 20} MiB; a run config is a short "
                           "mapping of option names to values.")
    try:
        data = yaml.load(path.read_bytes().decode("utf-8"), Loader=_loader())  # noqa: S506 (a safe loader)
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise DftlensError(f"Config file {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} on line "
                           f"{line}); save it as UTF-8.") from None
    except OSError as exc:
        raise DftlensError(f"Config file {path} cannot be read ({exc.strerror or exc}).") from None
    except _Alias as exc:
        raise DftlensError(f"Config file {path} uses a YAML alias (line {exc.args[0]}); write the value out "
                           "instead (dftlens does not expand aliases).") from None
    except RecursionError:
        raise DftlensError(f"Config file {path} nests values too deeply.") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise DftlensError(f"Config file {path} is not valid YAML{line}: {getattr(exc, 'problem', exc)}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise DftlensError(f"Config file {path} must be a mapping of option names to values, "
                           "such as `steps: 100`.")
    return data


def plain(value: Any) -> Any:
    """``value`` as YAML-safe builtins: paths become strings, tuples lists, dataclasses mappings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def write_run_config(path: str | Path, values: Mapping[str, Any], verb: str | None = None) -> Path:
    """Write ``values`` (option name -> value) as a run config, atomically; return its path."""
    import yaml

    from .io import write_text

    __version__ = version("dftlens")

    path = Path(path)
    head = f"# dftlens {verb}, written by dftlens {__version__}; rerun: dftlens {verb} --config {path.name}\n" \
        if verb else f"# written by dftlens {__version__}\n"
    class NoAliases(yaml.SafeDumper):  # read_run_config refuses aliases, so never write one
        def ignore_aliases(self, data):
            return True

    # one option per line (a mapping of scalars alone would otherwise become one {a: 1, b: 2} line), lists inline
    NoAliases.add_representer(list, lambda dumper, items: dumper.represent_sequence(
        "tag:yaml.org,2002:seq", items, flow_style=True))
    body = yaml.dump(plain(dict(values)), Dumper=NoAliases, sort_keys=False, allow_unicode=True,
                     default_flow_style=False)
    write_text(path, head + body)
    return path


def field_types(config_cls: type) -> dict[str, Any]:
    """The resolved type of every field of a config dataclass (string annotations evaluated)."""
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(config_cls)}


def option_name(field: dataclasses.Field) -> str:
    """The command-line name of a config field: its ``flag`` metadata's first name, else ``--field-name``."""
    flag = field.metadata.get("flag")
    if flag:
        first = (flag if isinstance(flag, str) else flag[0]).split("/")[0]
        return first
    return "--" + field.name.replace("_", "-")


def check_fields(config: Any) -> None:
    """What every config dataclass's ``__post_init__`` checks first, from its fields alone.

    Each numeric value (a float, or floats in a list/tuple) must be finite: ``nan`` and
    ``inf`` are refused (a ``--lr inf`` run would end with all-NaN weights); a field whose
    ``setting(..., choices=...)`` lists its allowed values must hold one of them (None is
    allowed for optional fields). Messages name the command-line option (``--lr``).

    Raises:
        NonFiniteError: a NaN or infinite number. DataError: a value outside ``choices``.
    """
    from .numerics import check_setting

    for field in dataclasses.fields(config):
        value, where = getattr(config, field.name), option_name(field)
        for item in value if isinstance(value, (list, tuple)) else (value,):
            check_setting(item, where)
        choices = field.metadata.get("choices")
        if choices and value is not None and value not in choices:
            raise DataError(f"{where} must be one of {', '.join(map(str, choices))}, not {shown(value)}.")


def setting(default: Any = dataclasses.MISSING, help: str = "", *, default_factory: Any = dataclasses.MISSING,
            **cli: Any) -> Any:
    """A config dataclass field with its command-line help: ``steps: int = setting(100, "Optimizer steps.")``.

    ``help`` is the option's help text. Further keywords describe the command line
    (read by ``dftlens_cli.config_options``): ``choices`` (allowed values, shown in the
    help and checked by :func:`check_fields`, which every config's ``__post_init__`` calls),
    ``flag`` (option names instead of ``--field-name``),
    ``formerly`` (the field's old name, still read from config files and saved runs; see
    :func:`renamed_settings`), ``none_as`` (the value that stands for ``None`` on the command line, such as 0 for
    "all"), ``parse``/``show`` (from a command-line string or YAML value to the field's
    value, and back to text), ``repeat=True`` (a list option given several times,
    ``--model a --model b``; commas work too), ``short`` (extra names such as
    ``("-m",)``), ``cli=False`` (a setting only config files set).
    """
    metadata = {"help": help, **cli}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def renamed_settings(config_cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with each field's old name (its ``formerly`` metadata) replaced by the field's name.

    A value under the new name wins over one under the old name."""
    out = dict(values)
    for f in dataclasses.fields(config_cls):
        old = f.metadata.get("formerly")
        if old and old in out:
            value = out.pop(old)
            out.setdefault(f.name, value)
    return out
