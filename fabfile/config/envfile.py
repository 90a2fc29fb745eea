"""Dotenv files: the user's `.env` read literally, and the host's `.env` written the way Compose
reads it.

Compose reads a release's `.env` with compose-go's parser, which is not python-dotenv's:
- in single quotes a value is literal, but a `\\'` does not end it, so a value that ends in a
  backslash (`'pw\\'`) runs on into the next line, where a second value could add a variable;
- in double quotes it turns `\\\\`, `\\"`, `\\n` and `\\r` back into their characters and then
  interpolates `$NAME` and `${NAME}`, for which `$$` is a literal `$`.
So a value is written single-quoted when that reads back exactly (no `'`, no line break, not
ending in a backslash), double-quoted with those escapes otherwise. Only a NUL cannot be
written. tests/integration/test_security.py reads every kind of value back through the real
`docker compose config` on the testbed. Compose up to 2.19 (compose-go 1.15) ends a double-quoted
value at the first quote not after a backslash, so it misreads a value ending in `\\`: such a
Compose is refused (compose/commands.py's COMPOSE_MIN). The Swarm target's .env is sourced by
a shell instead (render_sh_env), with the shell's own quoting.
"""
import shlex
from pathlib import Path
from typing import Dict, Mapping

from dotenv import dotenv_values

from ..errors import ConfigError

UNWRITABLE = "\0"


def quoted(value: str) -> str:
    """`value` as one line of a dotenv file that compose-go reads back unchanged."""
    if "'" not in value and "\n" not in value and "\r" not in value and not value.endswith("\\"):
        return f"'{value}'"
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("$", "$$"))
    return f'"{escaped}"'


def unwritable_names(env: Mapping[str, str]) -> list:
    """The variables whose values a dotenv file cannot hold (a NUL: no parser takes one)."""
    return [name for name, value in sorted(env.items())
            if any(c in str(value) for c in UNWRITABLE)]


def refuse_unwritable(env: Mapping[str, str]) -> None:
    bad = unwritable_names(env)
    if bad:
        raise ConfigError([f"{name} cannot be written to the host's .env: it contains a NUL"
                           for name in bad])


def render_env(env: Mapping[str, str]) -> str:
    """A compose .env, one `NAME=<quoted value>` per line: the one writer of the host's .env."""
    refuse_unwritable(env)
    return "".join(f"{name}={quoted(str(value))}\n" for name, value in sorted(env.items()))


def render_sh_env(env: Mapping[str, str]) -> str:
    """The Swarm target's .env, which a POSIX shell sources (`set -a; . .env`: `docker stack
    deploy` reads no env file): each value quoted for the shell (shlex.quote; a line break
    stays inside the quotes). The one writer of that file."""
    refuse_unwritable(env)
    return "".join(f"{name}={shlex.quote(str(value))}\n" for name, value in sorted(env.items()))


def read_dotenv(path: Path) -> Dict[str, str]:
    """The user's dotenv file, taken literally: `${NAME}` in a value is not expanded (a secret
    may contain `${`); python-dotenv's quoting rules otherwise."""
    return {k: v for k, v in dotenv_values(path, interpolate=False).items() if v is not None}
