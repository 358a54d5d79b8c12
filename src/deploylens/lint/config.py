"""``[tool.deploylens.lint]`` in a project's ``pyproject.toml``, found as ruff finds its
own: the nearest ``pyproject.toml`` from the current folder upward that has a
``[tool.deploylens]`` table (or the file ``--config`` names)::

    [tool.deploylens.lint]
    select = ["G", "CH-ALIGN"]      # rule ids or id prefixes (default: every rule)
    ignore = ["G2"]
    fail-on = "warning"             # exit 1 on findings at least this severe (default: info, any)

    [tool.deploylens.lint.options.G1]
    min-ratio = 3.0                 # each rule's named options: deploylens lint --explain G1

Every key is checked: an unknown key, rule or option, or a value of the wrong type, is
one error line naming the file and the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploylens.errors import UserError

SEVERITIES = ("info", "warning", "error")
KEYS = ("select", "ignore", "fail-on", "options")
TABLE = "[tool.deploylens.lint]"


@dataclass
class LintConfig:
    path: Path | None = None  # the file read (None: no configuration)
    select: list[str] | None = None  # None: every rule
    ignore: list[str] = field(default_factory=list)
    fail_on: str | None = None
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # rule id -> option name -> value

    def selection(self, select: list[str] | None, ignore: list[str] | None) -> tuple[list[str] | None, list[str]]:
        """The command line's ``select`` / ``ignore`` over the file's: ``--select``
        replaces the file's choice (its select and ignore), ``--ignore`` adds to it."""
        if select is not None:
            return select, list(ignore or [])
        return self.select, self.ignore + list(ignore or [])


def _read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise UserError(f"reading {path} needs Python 3.11 or the tomli package (pip install tomli)") from None
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from error
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path} is not valid TOML: {error}") from error


def find_config(start: Path | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` from ``start`` (the current folder) upward with a
    ``[tool.deploylens]`` table; None when there is none."""
    folder = (start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        path = candidate / "pyproject.toml"
        if path.is_file() and "deploylens" in _read_toml(path).get("tool", {}):
            return path
    return None


def _names(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise UserError(f"{where}: expected a list of rule ids or prefixes, e.g. [\"G\", \"CH-ALIGN\"]")
    return value


def load_config(path: Path) -> LintConfig:
    """The lint configuration in ``path`` (a ``pyproject.toml``-style file): its
    ``[tool.deploylens.lint]`` table, checked key by key."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such configuration file: {path}")
    table = _read_toml(path).get("tool", {}).get("deploylens", {}).get("lint")
    if table is None:
        return LintConfig(path)
    if not isinstance(table, dict):
        raise UserError(f"{path}: {TABLE} must be a table")
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r} in {TABLE}; keys: {', '.join(KEYS)}")
    config = LintConfig(path)
    if "select" in table:
        config.select = _names(table["select"], f"{path}: select")
    if "ignore" in table:
        config.ignore = _names(table["ignore"], f"{path}: ignore")
    if "fail-on" in table:
        if table["fail-on"] not in SEVERITIES:
            raise UserError(f"{path}: fail-on = {table['fail-on']!r}: one of {', '.join(SEVERITIES)}")
        config.fail_on = table["fail-on"]
    options = table.get("options", {})
    if not isinstance(options, dict) or not all(isinstance(value, dict) for value in options.values()):
        raise UserError(f"{path}: options: one table per rule, e.g. [tool.deploylens.lint.options.G1]")
    config.options = options
    return config


def discover(config: str | Path | None = None, isolated: bool = False) -> LintConfig:
    """The configuration a ``lint`` run uses: ``config`` when given, none when
    ``isolated``, else the nearest ``pyproject.toml`` with one (or none)."""
    if isolated:
        return LintConfig()
    if config is not None:
        return load_config(Path(config))
    found = find_config()
    return load_config(found) if found else LintConfig()
