"""Command-line options built from `Config`: one option per setting, none declared by hand.

`settings_options(...)` adds to a command ``--config FILE`` and one ``--option`` per field of
the sections it names, with the field's help and its section as the ``--help`` panel; the
command receives what was given as one `GivenSettings` and turns it into a `Config` with
`GivenSettings.config()`, which names the option in a range error (``--crops: expected >= 1``)
where a YAML file names its key.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import Field, dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints

import typer
from rich.markup import escape

from reid_merge.app.config import SECTIONS, Config, SettingError, load_config
from reid_merge.errors import UsageError

#: The parameter of a command that receives the settings given on the command line.
SETTINGS = "settings"
_CONFIG_FILE = "config_file"

_HINTS = get_type_hints(Config)


def option_name(field: Field[Any]) -> str:
    """The option as declared: ``--crops``, ``--max-gap``, a switch ``--fill-gaps/--no-fill-gaps``."""
    if field.metadata["option"]:
        return str(field.metadata["option"])
    name = field.name.replace("_", "-")
    return f"--{name}/--no-{name}" if _HINTS[field.name] is bool else f"--{name}"


def _help(field: Field[Any]) -> str:
    """The field's help and its default (None: the help says what no value means)."""
    if field.default is None:
        return str(field.metadata["help"])
    shown = ("on" if field.default else "off") if isinstance(field.default, bool) else field.default
    return f"{field.metadata['help']} {escape(f'[default: {shown}]')}"  # escaped: --help reads rich markup


@dataclass(frozen=True)
class GivenSettings:
    """What the command line says about settings: a ``--config`` file, and the options typed."""

    config_file: Path | None
    overrides: dict[str, Any]

    def config(self) -> Config:
        """The file's settings (else the defaults), with the command line's on top.

        Raises:
            UsageError: A bad file or value; a value out of range names the option typed.
        """
        base = load_config(self.config_file)
        try:
            return base.with_overrides(**self.overrides)
        except SettingError as exc:  # the file's values passed already: this one came from the command line
            field = next(f for f in fields(Config) if f.name == exc.name)
            raise UsageError(exc.naming(option_name(field))) from None


def settings_options(*sections: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a typer command ``--config FILE`` and one option per setting of `sections` (all
    when none is named).

    The command declares a keyword parameter ``settings: GivenSettings`` (not an option).
    """
    chosen = [f for f in fields(Config) if not sections or f.metadata["section"] in sections]
    chosen.sort(key=lambda f: list(SECTIONS).index(f.metadata["section"]))  # --help panels in file order
    config_file = inspect.Parameter(
        _CONFIG_FILE,
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(None, "--config", help="YAML file of settings (see configs/default.yaml)."),
        annotation=Path | None,
    )
    options = [
        inspect.Parameter(
            f.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                None,
                option_name(f),
                help=_help(f),
                rich_help_panel=f"Settings: {SECTIONS[f.metadata['section']].lower()}",
            ),
            annotation=_HINTS[f.name] | None,  # None: not given, the file's value (or the default) holds
        )
        for f in chosen
    ]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for name, p in signature.parameters.items() if name != SETTINGS]

        @functools.wraps(command)
        def with_settings(**kwargs: Any) -> Any:
            given = {f.name: kwargs.pop(f.name) for f in chosen}
            overrides = {k: v for k, v in given.items() if v is not None}
            settings = GivenSettings(kwargs.pop(_CONFIG_FILE), overrides)
            return command(**kwargs, **{SETTINGS: settings})

        with_settings.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*own, config_file, *options]
        )
        return with_settings

    return decorate
