"""Errors a user can act on. Tasks turn them into one clear message and a non-zero exit."""
from typing import Iterable


class DeployError(Exception):
    """A failure with a message meant for the person running the deploy (no traceback)."""


class ConfigError(DeployError):
    """Settings or flags are wrong; raised before anything is built, pushed or connected."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("configuration: " + "; ".join(self.problems)
                         + ". Set them in the environment or in .env (see docs/CONFIGURATION.md).")


class RemoteCommandError(DeployError):
    """A command on the staging host (or locally) exited non-zero."""

    def __init__(self, what: str, result_text: str) -> None:
        super().__init__(f"{what} failed:\n{result_text}".rstrip())


class ConnectionLost(DeployError):
    """The SSH connection dropped. Never silently reopened: the deploy lock lived on it."""


class TimedOut(Exception):
    """A command ran longer than its limit (a transport raises it; the Runner names the command)."""


class CommandTimedOut(RemoteCommandError):
    """A command ran past its timeout; the Runner ended its wait (the command itself may still
    run on the host: whoever gave it the timeout stops it)."""
