"""What every `dftlens` command shares: the typer app, the consoles and the error style.

Command modules import from here (never from :mod:`.app`, which imports them), so
the CLI has no import circle. User errors (:class:`dftlens.DftlensError`) become one
line ``error: <sentence>`` on stderr and exit code 2; no traceback.
"""

from __future__ import annotations

import functools
import sys

import typer
from rich.console import Console
from rich.markup import escape

from dftlens.errors import DftlensError

console = Console(highlight=False)  # no auto-colouring: hook names (blocks.12.hook_resid_post) stay one run of text
err_console = Console(stderr=True)


def _hide_flag_types(params):
    """Flags (--overwrite, --help ...) take no value, so their help row shows no ``<bool>``."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class Command(typer.core.TyperCommand):
    """A typer command whose flag options show no ``<bool>`` type marker in ``--help``."""

    def get_params(self, ctx):
        """The command's parameters, flags given an empty metavar."""
        return _hide_flag_types(super().get_params(ctx))


# Typer vendors click; its exception base class is reached through a public subclass.
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class Group(typer.core.TyperGroup):
    """The ``dftlens`` command group: flags without type markers, usage errors as one ``error:`` line."""

    def get_params(self, ctx):
        """The group's parameters, flags given an empty metavar."""
        return _hide_flag_types(super().get_params(ctx))

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        """Usage errors (a bad option value, an unknown option) in the same one-line style as the rest."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.Abort:
            err_console.print("aborted.")
            sys.exit(1)
        except _ClickException as exc:
            if type(exc).__name__ != "NoArgsIsHelpError":  # the help was printed instead
                ctx = getattr(exc, "ctx", None)
                hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
                message = exc.format_message()
                error(message + ("" if message.endswith((".", "?", "!")) else ".") + hint)
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


class App(typer.Typer):
    """A Typer whose commands render flags without a type marker."""

    def command(self, *args, cls=None, **kwargs):
        """Register a command as typer does, with :class:`Command` unless ``cls`` names another class."""
        return super().command(*args, cls=cls or Command, **kwargs)


app = App(cls=Group, add_completion=False, no_args_is_help=True)


def error(message: str) -> None:
    """Print one ``error: ...`` line on stderr (the one style of every command).

    A word longer than 300 characters (a huge value from a config file, say) is cut to its first
    120 and its length, so a message never echoes a whole large value. Rich markup in the message
    (a quoted ``[[fr, zh]]``) is printed as it is; on a terminal the line starts clean (a progress
    bar may be left on the current one).
    """
    if err_console.is_terminal:
        err_console.file.write("\r\x1b[2K")
    words = [w if len(w) <= 300 else f"{w[:120]}...({len(w)} characters)" for w in message.split(" ")]
    err_console.print(f"[bold red]error:[/] {escape(' '.join(words))}", highlight=False, soft_wrap=True)


def user_errors(func):
    """Turn DftlensError into ``error: <message>`` on stderr and its exit code (2); Ctrl-C into 130.

    SIGTERM and SIGHUP are handled like Ctrl-C (:mod:`dftlens.signals`): the command cleans up
    (temporary files, its lock) and exits with 128 + the signal number.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from dftlens.output_dirs import command_scope
        from dftlens.signals import exit_code, stop_raises

        try:
            with stop_raises(), command_scope():  # output locks are held until the command ends
                return func(*args, **kwargs)
        except DftlensError as exc:
            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            name = getattr(exc, "name", None)
            err_console.print(f"{'stopped by ' + name if name else 'interrupted'}; no partial output was kept.",
                              highlight=False)
            raise typer.Exit(exit_code(exc)) from None

    return wrapper
