"""`inv staging.setup` on a fresh server: no Docker, no deploy user; run twice."""
import json
import subprocess

import pytest

import testbed
from tests.integration.conftest import inv


@pytest.fixture
def fresh_server(testbed_env):
    reach = testbed.start_bare_host()
    yield dict(testbed_env, **reach)
    testbed.remove_bare_host()


def on_server(*argv):
    return subprocess.run(["docker", "exec", testbed.BARE_HOST, *argv], capture_output=True,
                          text=True).stdout.strip()


def test_setup_provisions_a_fresh_server_idempotently(fresh_server):
    deb = subprocess.run(["bash", str(testbed.HERE / "compose-deb.sh")], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert on_server("sh", "-c", "command -v docker || echo none") == "none"
    assert on_server("sh", "-c", "id deploy || echo none").endswith("none")

    first = inv(fresh_server, "staging.setup", "--compose-deb", deb, timeout=900)
    assert first.returncode == 0, first.output
    assert fresh_server["STAGING_KNOWN_HOSTS"] in first.stdout   # the pin to set, printed

    assert "docker" in on_server("id", "-nG", "deploy").split()
    assert on_server("stat", "-c", "%a %U", "/opt/classroom-manager") == "700 deploy"
    assert on_server("passwd", "-S", "deploy").split()[1] in ("L", "NP")   # no password login
    assert f"localhost:{testbed.REGISTRY_PORT}" in on_server("cat", "/home/deploy/.docker/config.json")
    # the deploy user now logs in by key and drives Docker and Compose v2
    status = inv(fresh_server, "deploy.status", "--json")
    assert json.loads(status.stdout)["sha"] is None, status.output
    assert on_server("su", "deploy", "-c", "docker compose version --short").startswith("2.")

    second = inv(fresh_server, "staging.setup", "--compose-deb", deb, timeout=300)
    assert second.returncode == 0, second.output
    assert second.stdout.count("already installed") == 2
