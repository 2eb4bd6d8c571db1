"""The settings table of docs/configuration.md, rendered from the Settings class.

`python -m app.settings_doc` rewrites the table between its two markers in
docs/configuration.md; `--check` only says whether the file is current (exit 1 if not).
The class is the one owner: each field's docstring is its description, and a field without
one is an error, so a setting cannot be added without being documented.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from pathlib import Path

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode

from app.settings import Settings

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
BEGIN = (
    "<!-- settings table: generated from app/settings.py by `python -m app.settings_doc`;"
    " do not edit by hand -->"
)
END = "<!-- end of settings table -->"


class UndocumentedSettingError(Exception):
    """A settings field has no docstring, so the configuration document cannot name it."""


def _cell(text: str) -> str:
    """Text fit for one markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _number(value: object) -> str:
    """A number as one would write it in the environment (10, 0.1, 1048576)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _default(field: FieldInfo) -> str:
    """The default as an environment value, or `unset` / `empty`."""
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int | float):
        return f"`{_number(value)}`"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    if isinstance(value, list | dict) and not value:
        return "empty"
    if isinstance(value, list) and all(isinstance(item, BaseModel) for item in value):
        return "`" + json.dumps([item.model_dump(mode="json") for item in value]) + "`"
    raise TypeError(f"no way to show the default {value!r}")


def _range(field: FieldInfo) -> str:
    """The bounds the field's metadata declares, e.g. `1 to 65535` or `> 0, ≤ 3600`."""
    bounds: dict[str, object] = {}
    for item in field.metadata:
        for name in ("ge", "gt", "le", "lt"):
            if isinstance(item, getattr(annotated_types, name.capitalize())):
                bounds[name] = getattr(item, name)
    if "ge" in bounds and "le" in bounds:
        return f"{_number(bounds['ge'])} to {_number(bounds['le'])}"
    symbols = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    return ", ".join(f"{symbols[name]} {_number(value)}" for name, value in bounds.items())


def _values(field: FieldInfo) -> str:
    """What the variable accepts, read from the field's type and constraints."""
    annotation = field.annotation
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):  # `X | None`
        (annotation,) = (arg for arg in typing.get_args(annotation) if arg is not type(None))
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return ", ".join(f"`{choice}`" for choice in typing.get_args(annotation))
    if annotation is bool:
        return "`true`, `false`"
    if annotation in (int, float):
        kind = "integer" if annotation is int else "number"
        bounds = _range(field)
        return f"{kind}, {bounds}" if bounds else kind
    if annotation is SecretStr:
        return "text (secret)"
    if annotation is str:
        return "text"
    if origin is list and NoDecode in field.metadata:  # parsed by a validator, not as JSON
        return "comma-separated list or JSON list"
    if origin is list:
        return "JSON list"
    if origin is dict:
        return "JSON object"
    raise TypeError(f"no way to describe the type {annotation!r}")


def settings_table(settings_class: type[BaseSettings] = Settings) -> str:
    """The markdown table of every field of `settings_class`, in declaration order."""
    rows = ["| variable | default | values | meaning |", "| --- | --- | --- | --- |"]
    missing = []
    for name, field in settings_class.model_fields.items():
        if not field.description:
            missing.append(name.upper())
            continue
        variable = (field.alias or name).upper()
        rows.append(
            f"| `{variable}` | {_cell(_default(field))} | {_cell(_values(field))}"
            f" | {_cell(field.description)} |"
        )
    if missing:
        raise UndocumentedSettingError(
            f"settings without a docstring in {settings_class.__module__}: {', '.join(missing)}"
        )
    return "\n".join(rows)


def render_document(current: str, settings_class: type[BaseSettings] = Settings) -> str:
    """`current` with the text between the two markers replaced by the generated table."""
    head, begin, rest = current.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"{DOC_PATH.name} lacks the markers {BEGIN!r} and {END!r}")
    return f"{head}{BEGIN}\n{settings_table(settings_class)}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    """Rewrite docs/configuration.md's table, or with --check say whether it is current."""
    parser = argparse.ArgumentParser(prog="python -m app.settings_doc", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    current = DOC_PATH.read_text()
    rendered = render_document(current)
    if rendered == current:
        return 0
    if args.check:
        print(f"{DOC_PATH} is stale: run `python -m app.settings_doc`", file=sys.stderr)
        return 1
    DOC_PATH.write_text(rendered)
    print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
