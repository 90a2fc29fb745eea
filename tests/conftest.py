"""Shared fixtures: the project's own invoke.yaml defaults and a complete, valid environment.

Under pytest-xdist (`-n N`), worker gwK drives testbed instance K+1 (TESTBED_INSTANCE, read by
the testbed package when it is first imported, which is after this file): its own registry,
staging host, ports and env file. Without xdist the tests use instance 0, the README's testbed.
"""
import os
from pathlib import Path

import pytest
from invoke import Config

ROOT = Path(__file__).resolve().parent.parent
if os.environ.get("PYTEST_XDIST_WORKER", "").startswith("gw"):
    os.environ["TESTBED_INSTANCE"] = str(int(os.environ["PYTEST_XDIST_WORKER"][2:]) + 1)


# The integration modules, longest first (docs/TESTING.md has their measured times): the order
# within a worker. xdist itself hands modules out by their number of tests (docs/TESTING.md).
LONGEST_FIRST = ["test_swarm_stack", "test_failure_safety", "test_staying_up", "test_zero_downtime",
                 "test_adoption",
                 "test_rollback_and_prune", "test_security", "test_deploy", "test_https",
                 "test_incident_tools", "test_setup"]


def pytest_collection_modifyitems(items):
    """The integration modules longest first, then any new one, then the unit tests (seconds
    each), which fill the gaps."""
    def weight(item):
        path = Path(str(item.fspath))
        if "unit" in path.parts:
            return len(LONGEST_FIRST) + 1
        return LONGEST_FIRST.index(path.stem) if path.stem in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=weight)


@pytest.fixture
def defaults():
    """This repository's invoke.yaml `deploy:` keys over the tool's defaults."""
    from staging_deploy.config.defaults import with_tool_defaults
    config = Config(project_location=str(ROOT))
    config.load_project()
    return with_tool_defaults(config.deploy)


@pytest.fixture
def environ():
    return {
        "STAGING_HOST": "staging.example.com",
        "STAGING_USER": "deploy",
        "STAGING_SSH_KEY": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----",
        "STAGING_KNOWN_HOSTS": "staging.example.com ssh-ed25519 "
                               "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
        "STAGING_URL": "https://staging.example.com/",
        "IMAGE_NAME": "acme/classroom-manager",
        "DB_PASSWORD": "s3cret-db-pw",
        "JWT_SECRET": "jwt-very-secret",
    }


@pytest.fixture
def settings(defaults, environ):
    from staging_deploy.config.settings import load_settings
    return load_settings(defaults, environ, cwd=ROOT)


class FakeClock:
    """A monotonic clock and sleep for polling tests: sleeping only moves the clock."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


# Values the host's .env must give back exactly: quotes, backslashes (one ending a value), `$`
# and `${` (Compose interpolates double-quoted values), `#`, line breaks, non-ASCII.
ENV_VALUES = ["plain", "pw\\", "a\\\\b", "x'y", "it's\"", "\"quoted\"", "$HOME", "${HOME}", "$$",
              "a${b", "#hash", "a #b", "x\ny", "\r", "é ünï 日本", " lead", "trail ", "'", "\"",
              "\\'", "\\\"", "a\\nb", "\\$x", "end\\\\", "$(touch x)", "x'\\", "'\"", "${HOME:-x}",
              "tab\there", "a=b", "`cmd`", "it's a \\\\ \"test\" $HOME #x\n",
              # the review's pair: a value ending in a backslash, then one holding a variable
              "x\\", "DATABASE_URL=postgresql://elsewhere#"]
