"""HTTPS certificates (certificate.py): when one is due, what a failure says, what the edge
gets, against a scripted host (the ACME exchange itself is tested for real in
tests/integration/test_https.py)."""
import datetime
import io
from dataclasses import replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from staging_deploy.compose import certificate
from staging_deploy.compose.commands import health_on_host
from staging_deploy.config.settings import load_settings
from staging_deploy.errors import ConfigError, DeployError
from staging_deploy.report import Reporter
from staging_deploy.transport.commands import Result
from staging_deploy.transport.machines import Plan, Recorder, Script
from staging_deploy.transport.runner import Runner
from tests.conftest import ROOT

NOW = datetime.datetime(2026, 11, 30, 12, 0)
EDGE = "/opt/classroom-manager/edge"


def pem(name="staging.example.com", days_left=60.0, serial=0xabc):
    key = certificate.new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(NOW - datetime.timedelta(days=30))
            .not_valid_after(NOW + datetime.timedelta(days=days_left))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(certificate.serialization.Encoding.PEM).decode()


class Host(Script):
    """A host whose edge serves `served` (a PEM chain, or nothing yet)."""

    def __init__(self, served=""):
        self.files = {}
        if served:
            serial = certificate.parse_certificate(served).serial
            self.files[f"{EDGE}/https.conf"] = certificate.https_conf(serial)
            self.files[f"{EDGE}/tls/{serial}.crt"] = served
        self.commands = []

    def answer(self, command):
        self.commands.append(command.argv)
        if command.argv[0] == "cat":
            text = self.files.get(command.argv[-1])
            return Result(0 if text is not None else 1, text or "", "")
        return Result(0, "", "")

    def put(self, path, data):
        self.files[path] = data.decode()


class Live(Recorder):
    records = False    # as a real host: ensure() asks the ACME server (certificate.order, mocked)


@pytest.fixture
def https(settings):
    assert settings.STAGING_URL == "https://staging.example.com"
    return replace(settings, values={**settings.values, "EDGE_TLS": "acme"})


@pytest.fixture
def http(settings):
    assert settings.EDGE_TLS == "none"      # the default: TLS, if any, ends in front
    return settings


def ensure(settings, host, force=False, reloads=None):
    out, reloads = io.StringIO(), [] if reloads is None else reloads
    line = certificate.ensure(Runner(Live(Plan(), "remote", host), "remote"), settings,
                              Reporter(stream=out), lambda: reloads.append(1),
                              force=force, now=NOW)
    return line, out.getvalue()


def test_due_when_missing_for_another_name_or_within_the_renewal_days():
    cert = certificate.parse_certificate(pem(days_left=60))
    assert certificate.due(None, "staging.example.com", 30, NOW) == "none yet"
    assert certificate.due(cert, "staging.example.com", 30, NOW) is None
    assert certificate.due(cert, "STAGING.example.com", 30, NOW) is None
    assert "not other.example.com" in certificate.due(cert, "other.example.com", 30, NOW)
    assert "60 days left" in certificate.due(cert, "staging.example.com", 61, NOW)


def test_a_certificate_not_due_is_kept_and_nothing_is_asked(https, mocker):
    order = mocker.patch.object(certificate, "order")
    host = Host(pem(days_left=60))
    line, _ = ensure(https, host)
    order.assert_not_called()
    assert line.startswith("https: certificate for staging.example.com valid until 2027-01-29")
    assert host.files[f"{EDGE}/https-redirect.conf"] == (
        "if ($scheme = http) {\n    return 308 https://staging.example.com$request_uri;\n}\n")


def test_a_new_certificate_is_named_only_once_in_place_and_the_edge_reloads(https, mocker):
    fresh = pem(days_left=90, serial=0xdef)
    mocker.patch.object(certificate, "order",
                        return_value=certificate.Issued(fresh, b"-----BEGIN PRIVATE KEY-----x"))
    host, reloads = Host(), []
    line, out = ensure(https, host, reloads=reloads)
    assert line.startswith("https: new certificate for staging.example.com valid until")
    assert host.files[f"{EDGE}/tls/def.crt"] == fresh
    assert host.files[f"{EDGE}/https.conf"] == certificate.https_conf("def")
    assert "ssl_certificate_key /etc/nginx/deploy/tls/def.key;" in certificate.https_conf("def")
    assert reloads == [1]
    assert "PRIVATE KEY" not in out
    # older pairs go, after the reload
    assert host.commands[-1][:2] == ("find", f"{EDGE}/tls")
    assert "def.*" in host.commands[-1]


def test_nginx_refusing_the_new_pair_puts_the_previous_config_back(https, mocker):
    old = pem(days_left=5)
    host = Host(old)
    before = host.files[f"{EDGE}/https.conf"]
    mocker.patch.object(certificate, "order", return_value=certificate.Issued(
        pem(serial=0x123), b"key"))

    def refuse():
        raise DeployError("nginx: [emerg] cannot load certificate")
    with pytest.raises(DeployError, match="cannot load certificate"):
        certificate.ensure(Runner(Live(Plan(), "remote", host), "remote"), https,
                           Reporter(stream=io.StringIO()), refuse, now=NOW)
    assert host.files[f"{EDGE}/https.conf"] == before


def test_a_failed_renewal_with_a_valid_certificate_warns_and_goes_on(https, mocker):
    mocker.patch.object(certificate, "order", side_effect=DeployError("the ACME server said x"))
    line, out = ensure(https, Host(pem(days_left=5)))
    assert "warning: could not renew the certificate for staging.example.com (the ACME server " \
           "said x); the edge keeps serving the one it has (5 days left)" in out
    assert line.startswith("https: renewal failed, certificate for staging.example.com")


def test_no_certificate_and_none_to_be_had_stops_the_deploy_in_one_line(https, mocker):
    mocker.patch.object(certificate, "order", side_effect=DeployError(certificate.explain(
        "connection", "127.0.0.2: Connection refused", "staging.example.com")))
    for served in ("", pem(days_left=-1), pem(name="old.example.com")):
        with pytest.raises(DeployError) as failed:
            ensure(https, Host(served))
        assert str(failed.value) == (
            "no HTTPS certificate for staging.example.com: the ACME server said connection: "
            "127.0.0.2: Connection refused; staging.example.com must resolve (DNS) to this "
            "server and its port 80 be open to the internet")


def test_acme_problems_read_as_causes():
    assert certificate.explain("rateLimited", "too many\n certificates", "a.example") == (
        "the ACME server said rateLimited: too many certificates; the ACME server rate-limits "
        "this name or account: try again later (its staging directory, set as ACME_DIRECTORY, "
        "has higher limits)")
    assert certificate.explain("dns", "NXDOMAIN", "a.example").endswith(
        "a.example has no usable DNS record: point it (A/AAAA) at this server")
    assert certificate.explain("serverInternal", "", "a.example") == (
        "the ACME server said serverInternal")


def test_a_dry_run_says_it_would_ask_and_asks_nothing(https, mocker):
    order = mocker.patch.object(certificate, "order")
    out = io.StringIO()
    line = certificate.ensure(Runner(Recorder(Plan(), "remote", Host()), "remote"), https,
                              Reporter(stream=out), lambda: None, now=NOW)
    order.assert_not_called()
    assert "would ask https://acme-v02.api.letsencrypt.org/directory for a certificate for " \
           "staging.example.com (none yet)" in out.getvalue()
    assert line == "https: a certificate for staging.example.com would be obtained"


class WasOn(Host):
    def answer(self, command):
        result = super().answer(command)
        return Result(0, "removed 'https.conf'\n", "") if command.argv[0] == "rm" else result


def test_edge_tls_none_turns_https_off_and_reloads_only_if_it_was_on(http):
    for host, reloaded in ((Host(), []), (WasOn(), [1])):
        reloads = []
        assert ensure(http, host, reloads=reloads)[0] == ""
        assert host.commands == [
            ("rm", "-fv", "--", f"{EDGE}/https.conf", f"{EDGE}/https-redirect.conf")]
        assert reloads == reloaded


def test_the_host_check_asks_the_https_port_once_https_is_on(http, https):
    assert health_on_host(http).argv[-1] == "http://127.0.0.1:80/api/health"
    command = health_on_host(https)
    assert command.argv[-1] == "https://127.0.0.1:443/api/health" and "-k" in command.argv
    assert health_on_host(https, "blue").argv[-1] == "http://127.0.0.1:8099/api/health"


def test_acme_on_the_swarm_target_or_with_an_http_url_is_refused_in_one_line(defaults, environ):
    environ.update(DEPLOY_TARGET="swarm", EDGE_TLS="acme")
    with pytest.raises(ConfigError, match="the swarm target's edge serves plain HTTP only"):
        load_settings(defaults, environ, cwd=ROOT)
    environ.update(DEPLOY_TARGET="compose", STAGING_URL="http://staging.example.com")
    with pytest.raises(ConfigError, match="EDGE_TLS=acme needs an https STAGING_URL"):
        load_settings(defaults, environ, cwd=ROOT)


def test_the_certificate_task_without_edge_tls_says_how_to_turn_it_on(environ):
    from tests.unit.test_cli import inv
    result = inv("deploy.certificate", env=environ)
    assert result.returncode == 1
    assert "EDGE_TLS is none: the edge serves no HTTPS (set EDGE_TLS=acme" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_status_names_the_certificate_or_its_absence(http, https):
    runner = Runner(Live(Plan(), "remote", Host(pem(days_left=400))), "remote")
    assert certificate.status(runner, http) is None
    assert certificate.status(runner, https).startswith("certificate for staging.example.com "
                                                        "valid until")
    assert certificate.status(Runner(Live(Plan(), "remote", Host()), "remote"), https) == (
        "no certificate yet (the next deploy obtains one)")
