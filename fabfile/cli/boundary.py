"""Where the user meets the tool: flags read strictly, and every failure one line.

A user error (DeployError, ConfigError) ends as `error: <message>` and exit 1; Ctrl-C as exit
130; anything else (a bug) as one redacted line, its traceback only with DEPLOY_DEBUG=1. No
secret of the environment reaches any of them.
"""
import functools
import io
import math
import os
import sys
import traceback
from typing import Any, Callable, Optional, TypeVar, Union

from invoke import Exit

from ..config.settings import Settings, environment_secrets
from ..errors import ConfigError, DeployError
from ..report import KNOWN_SECRETS, Reporter, redact, secret_forms
from ..transport.session import HostSession

T = TypeVar("T")


def crash_line(exc: BaseException) -> str:
    """Any exception no task turned into a user error, as one redacted line (and, with
    DEPLOY_DEBUG=1, its traceback first, redacted too, on stderr)."""
    secrets = secret_forms(set(KNOWN_SECRETS) | set(environment_secrets(os.environ)))
    if os.environ.get("DEPLOY_DEBUG") == "1":
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        print(redact(trace, secrets), file=sys.stderr)
    text = " ".join(str(exc).split()) or "no details"
    if "yaml" in type(exc).__module__:   # Invoke reading invoke.yaml (or inv -f FILE)
        return redact(f"error: a config file is not plain YAML (no tags such as !!python): "
                      f"{text[:500]}", secrets)
    return redact(f"error: {type(exc).__name__}: {text[:500]} (DEPLOY_DEBUG=1 shows where; "
                  "please report it)", secrets)


def last_resort(kind: type, exc: BaseException, trace: Any) -> None:
    """sys.excepthook: what fails before a task runs (Invoke reading invoke.yaml) ends the same
    way, in one line."""
    if issubclass(kind, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return
    print(crash_line(exc), file=sys.stderr)


def user_errors(function: Callable[..., T]) -> Callable[..., T]:
    """Turn DeployError into `error: <message>` and exit 1; Ctrl-C into exit 130; anything else
    into one redacted line and exit 1, never a raw traceback."""
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return function(*args, **kwargs)
        except DeployError as exc:
            raise Exit(redact(f"error: {exc}"), code=1) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None
        except Exit:
            raise
        except Exception as exc:
            raise Exit(crash_line(exc), code=1) from None
    return wrapper


def lock_wait(value: Union[None, bool, str]) -> Optional[float]:
    """--wait-lock alone waits up to 10 minutes; --wait-lock=SECONDS that long; absent: no wait."""
    if value in (None, False):
        return None
    if value is True:
        return 600.0
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and 1 <= seconds <= 86400):
        raise ConfigError([f"--wait-lock={str(value)[:40]!r} must be a number of seconds from 1 "
                           "to 86400"])
    return seconds


def whole_number(flag: str, value: Union[int, str], most: int = 100000) -> int:
    """A flag that counts something (Invoke's own cast would end in a traceback): ASCII digits
    only (`²` is a digit to Python, not to int())."""
    text = str(value)
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= most):
        raise DeployError(f"{flag} {text[:40]!r} must be a whole number from 1 to {most}")
    return int(text)


def confirm(question: str) -> str:
    if not sys.stdin.isatty():
        raise ConfigError(["--restore-db needs confirmation: add --yes when not at a terminal"])
    return input(question)


def reporter_for(settings: Settings) -> Reporter:
    return Reporter(settings.secrets)


def quiet_session(settings: Settings) -> HostSession:
    """A HostSession whose step lines are not printed (status and history print only results)."""
    return HostSession(settings, Reporter(settings.secrets, stream=io.StringIO()))
