"""HTTPS at the edge, its certificate from the testbed's own ACME server (pebble, Let's
Encrypt's test CA, validating HTTP-01 at the staging host's port 80 as Let's Encrypt would):
issued by a deploy, kept by the next deploy and a rollback, renewed under load without a failed
request, served again after a reboot, and refused in one line when the name points elsewhere."""
import re
import socket
import ssl
import time

import pytest
import requests
from cryptography import x509

import testbed
from testbed.load import STORY_ROUTES, SteadyLoad
from tests.integration.conftest import APP_URL, deploy, inv, release, staging_host
from tests.integration.test_staying_up import reboot_staging_host

HTTPS_URL = f"https://localhost:{testbed.HTTPS_PORT}"
CA = str(testbed.ACME_CA_BUNDLE)
STAGING_DIR = "/opt/classroom-manager"
EDGE = f"{STAGING_DIR}/edge"


@pytest.fixture(scope="module")
def https_env(testbed_env):
    env = dict(testbed_env, **testbed.https_settings())
    yield env
    # The next module on this worker's testbed speaks plain HTTP: HTTPS off, as a deploy with
    # an http STAGING_URL would leave it.
    staging_host("rm", "-f", f"{EDGE}/https.conf", f"{EDGE}/https-redirect.conf")
    staging_host("docker", "exec", "classroom-manager-edge-1", "nginx", "-s", "reload", "-c",
                 "/etc/nginx/deploy/nginx.conf")


@pytest.fixture(scope="module")
def first(https_env):
    """The module's first deploy with an https STAGING_URL: it obtains the certificate."""
    sha = release("https")
    result = deploy(https_env, sha)
    assert result.returncode == 0, result.output
    return sha, result


def served_serial():
    """The serial of the certificate the edge serves for localhost, verified against the ACME
    server's root (a self-signed or expired one fails here)."""
    context = ssl.create_default_context(cafile=CA)
    with socket.create_connection(("127.0.0.1", testbed.HTTPS_PORT), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
    return format(x509.load_der_x509_certificate(der).serial_number, "x")


def https_health():
    response = requests.get(HTTPS_URL + "/api/health", verify=CA, timeout=5)
    return response.status_code, response.headers.get("X-App-Version")


def test_a_deploy_obtains_a_certificate_and_serves_the_app_over_https(first):
    sha, result = first
    assert "--> obtain a certificate for localhost from https://127.0.0.1:" in result.output
    assert "https: new certificate for localhost valid until" in result.output
    assert re.search(r"ACME account https://127\.0\.0\.1:\d+/\S+ \(a CAA record", result.output)
    assert https_health() == (200, sha)
    # plain HTTP goes to the https origin; the ACME challenge path is never redirected
    plain = requests.get(APP_URL + "/api/items?page=2", allow_redirects=False, timeout=5)
    assert (plain.status_code, plain.headers["Location"]) == (308, HTTPS_URL + "/api/items?page=2")
    challenge = requests.get(APP_URL + "/.well-known/acme-challenge/none", allow_redirects=False,
                             timeout=5)
    assert challenge.status_code == 404
    # the keys: readable by the deploy user only, never printed
    modes = dict(reversed(line.split(" ", 1)) for line in staging_host(
        "sh", "-c", f"stat -c '%a %n' {EDGE}/tls {EDGE}/tls/* {STAGING_DIR}/acme-account.pem"
    ).splitlines())
    assert modes.pop(f"{EDGE}/tls") == "700", modes
    assert modes.pop(f"{STAGING_DIR}/acme-account.pem") == "600", modes
    assert sorted(mode for name, mode in modes.items()) == ["600", "644"], modes
    key = next(name for name in modes if name.endswith(".key"))
    assert modes[key] == "600"
    body = staging_host("cat", key).splitlines()[1]
    assert body not in result.output


def test_a_redeploy_and_a_rollback_keep_the_certificate(first, https_env):
    serial = served_serial()
    second = release("https-again")
    result = deploy(https_env, second)
    assert result.returncode == 0, result.output
    assert "obtain a certificate" not in result.output
    assert "https: certificate for localhost valid until" in result.output
    assert served_serial() == serial and https_health() == (200, second)
    back = inv(https_env, "deploy.rollback")
    assert back.returncode == 0, back.output
    assert served_serial() == serial and https_health() == (200, first[0])
    status = inv(https_env, "deploy.status")
    assert status.returncode == 0, status.output    # healthy, through the HTTPS port and URL
    assert "https     certificate for localhost valid until" in status.stdout
    kept = inv(https_env, "deploy.certificate")      # not due: nothing asked of the ACME server
    assert kept.returncode == 0, kept.output
    assert "https: certificate for localhost valid until" in kept.output
    assert served_serial() == serial


def test_renewal_under_load_drops_no_request(first, https_env):
    before = served_serial()
    with SteadyLoad(HTTPS_URL, paths=STORY_ROUTES, rate=20, max_seconds=120, verify=CA) as load:
        # the testbed's certificates live a day: renewing two days ahead makes it due now
        result = inv(https_env, "deploy.certificate", TLS_RENEW_DAYS="2")
        deadline = time.monotonic() + 10
        while served_serial() == before:
            assert time.monotonic() < deadline, "the edge still serves the old certificate"
            time.sleep(0.2)
        load.stop_event.wait(2)                    # and requests go on over the new one
    stats = load.stop()
    assert result.returncode == 0, result.output
    assert "https: new certificate for localhost" in result.output
    assert stats.failed == 0, stats.line()
    assert stats.sent >= 40, stats.line()
    assert staging_host("sh", "-c", f"ls {EDGE}/tls | wc -l").strip() == "2"   # the old pair gone


def test_the_certificate_is_served_again_after_a_reboot(first):
    serial = served_serial()
    reboot_staging_host()
    deadline = time.monotonic() + 60
    while True:
        try:
            if https_health()[0] == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "HTTPS not served within 60 s of the reboot"
        time.sleep(0.5)
    assert served_serial() == serial


def test_a_name_that_points_elsewhere_is_refused_in_one_line_and_the_app_keeps_serving(
        first, https_env):
    live = https_health()[1]
    testbed.point_dns("elsewhere.test", "127.0.0.2")    # no server of ours listens there
    result = deploy(https_env, release("https-elsewhere"),
                    STAGING_URL=f"https://elsewhere.test:{testbed.HTTPS_PORT}")
    assert result.returncode == 1, result.output
    assert "Traceback" not in result.output
    line = next(line for line in result.output.splitlines()
                if "no HTTPS certificate for elsewhere.test" in line)
    assert "the ACME server said connection" in line, line
    assert "elsewhere.test must resolve (DNS) to this server and its port 80 be open" in line
    assert https_health() == (200, live)
    assert served_serial()
