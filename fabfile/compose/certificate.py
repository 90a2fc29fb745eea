"""HTTPS at the edge: a certificate for STAGING_URL's host, obtained and renewed by ACME.

HTTPS is on with EDGE_TLS=acme (the compose target; STAGING_URL is then https). Before a deploy
judges or starts a release, it makes sure the edge holds a certificate for that host with more
than TLS_RENEW_DAYS left; `inv deploy.certificate` does the same on its own (a scheduled
workflow runs it daily).
When one is due, this machine asks the ACME server (ACME_DIRECTORY: Let's Encrypt unless set)
for it, answering the HTTP-01 challenge through the edge itself: the token is written to the
host, where the edge serves it at /.well-known/acme-challenge/ on port 80 (never redirected).

On the host (STAGING_DIR):
- `acme-account.pem` (0600): the ACME account's key, made once, never in the edge;
- `edge/tls/<serial>.crt` and `edge/tls/<serial>.key` (0600, in a 0700 folder): the
  certificate with its chain, and its key, made here and sent over SFTP, never printed;
- `edge/https.conf`: the edge's 443 listener naming the current pair; `edge/https-redirect.conf`:
  plain HTTP to STAGING_URL's origin. A new pair is named only once it is in place, and the edge
  re-reads its config (`nginx -t`, then a reload: no request is dropped); if nginx refuses it,
  the previous https.conf is put back. Both survive redeploys, rollbacks and reboots: the edge
  reads them from its folder at every start.

A certificate that cannot be had is one line saying why (the ACME server's own words, and what
usually causes it); with a valid one still in place the deploy goes on (it is renewed next
time), without one the deploy stops before it changes anything.
"""
from __future__ import annotations

import datetime
import posixpath
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, Optional
from urllib.parse import urlparse

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import DeployError
from ..transport.commands import cmd
from .commands import EDGE_MOUNT, edge_dir

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..report import Reporter
    from ..transport.runner import Runner

HTTPS_CONF = "https.conf"
REDIRECT_CONF = "https-redirect.conf"
TLS_FOLDER = "tls"
CHALLENGE_ROOT = "acme"                      # served as /.well-known/acme-challenge/ (nginx.conf)
CHALLENGE_PATH = ".well-known/acme-challenge"
ACCOUNT_FILE = "acme-account.pem"
ORDER_DEADLINE = 90                          # seconds the ACME server has to validate and issue


def https_on(settings: Settings) -> bool:
    """EDGE_TLS=acme (config/settings.py made sure STAGING_URL is https then)."""
    return settings.EDGE_TLS == "acme"


def domain(settings: Settings) -> str:
    return urlparse(settings.STAGING_URL).hostname or ""


def origin(settings: Settings) -> str:
    """STAGING_URL without its path: where plain HTTP is redirected, built from its checked
    host and port only (config/definitions.py's NETLOC), never copied from the text."""
    parsed = urlparse(settings.STAGING_URL)
    host = f"[{parsed.hostname}]" if ":" in (parsed.hostname or "") else parsed.hostname
    return f"https://{host}" + (f":{parsed.port}" if parsed.port else "")


def edge_path(settings: Settings, *parts: str) -> str:
    return posixpath.join(edge_dir(settings), *parts)


def https_conf(serial: str) -> str:
    """edge/https.conf, included in the edge's public server: 443 with the pair named."""
    tls = f"{EDGE_MOUNT}/{TLS_FOLDER}/{serial}"
    return ("listen 443 ssl;\n"
            f"ssl_certificate {tls}.crt;\n"
            f"ssl_certificate_key {tls}.key;\n"
            "ssl_protocols TLSv1.2 TLSv1.3;\n"
            "ssl_session_cache shared:tls:10m;\n")


def redirect_conf(settings: Settings) -> str:
    """edge/https-redirect.conf, included in the public server's `location /`: plain HTTP goes
    to the https origin (the ACME challenge path has a location of its own, never redirected)."""
    return f"if ($scheme = http) {{\n    return 308 {origin(settings)}$request_uri;\n}}\n"


@dataclass
class Certificate:
    """What the edge serves now, as far as renewing goes."""
    serial: str
    names: List[str]
    not_after: datetime.datetime

    def left(self, now: datetime.datetime) -> datetime.timedelta:
        return self.not_after - now

    def covers(self, name: str) -> bool:
        return name.lower() in (n.lower() for n in self.names)

    def describe(self, now: datetime.datetime) -> str:
        return (f"certificate for {', '.join(self.names)} valid until "
                f"{self.not_after:%Y-%m-%d %H:%M} UTC ({days(self.left(now))} left)")


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def days(delta: datetime.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.0f} days" if hours >= 48 else f"{max(hours, 0):.1f} hours"


def parse_certificate(pem: str) -> Optional[Certificate]:
    """The first certificate of a PEM chain, or None when there is none (or it is unreadable)."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        return None
    try:
        names = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    return Certificate(format(cert.serial_number, "x"), list(names),
                       cert.not_valid_after_utc.replace(tzinfo=None))


def current_serial(https_text: str) -> Optional[str]:
    """The serial https.conf names (None without one)."""
    for line in https_text.splitlines():
        if line.startswith("ssl_certificate "):
            return posixpath.basename(line.split()[1].rstrip(";")).rsplit(".", 1)[0]
    return None


def due(cert: Optional[Certificate], name: str, renew_days: float,
        now: datetime.datetime) -> Optional[str]:
    """Why a new certificate is needed (None: the one in place will do)."""
    if cert is None:
        return "none yet"
    if not cert.covers(name):
        return f"the one in place is for {', '.join(cert.names) or 'no name'}, not {name}"
    if cert.left(now) < datetime.timedelta(days=renew_days):
        return f"the one in place has {days(cert.left(now))} left (renewed {renew_days:g} days ahead)"
    return None


# What an ACME problem usually means, for the one line a failure prints.
CAUSES = {
    "connection": "{domain} must resolve (DNS) to this server and its port 80 be open to the "
                  "internet",
    "dns": "{domain} has no usable DNS record: point it (A/AAAA) at this server",
    "unauthorized": "another server answered for {domain}: point its DNS at this server",
    "incorrectResponse": "another server answered for {domain}: point its DNS at this server",
    "rateLimited": "the ACME server rate-limits this name or account: try again later (its "
                   "staging directory, set as ACME_DIRECTORY, has higher limits)",
    "rejectedIdentifier": "the ACME server will not issue for {domain} (a public name is needed)",
}


# The ACME server's own text quotes whatever the name's DNS points to: it reaches CI logs and
# the team's chat, so control characters (terminal escapes) go, and it is kept short.
DETAIL_MAX = 300


def explain(code: str, detail: str, name: str) -> str:
    """One line for an ACME problem `code` (urn:ietf:params:acme:error:<code>)."""
    cause = CAUSES.get(code)
    detail = " ".join(re.sub(r"[\x00-\x1f\x7f-\x9f]", " ", detail).split())
    if len(detail) > DETAIL_MAX:
        detail = detail[:DETAIL_MAX] + "..."
    said = f"{re.sub(r'[^A-Za-z0-9:._-]', '', code)}: {detail}" if detail else code
    return f"the ACME server said {said}" + (f"; {cause.format(domain=name)}" if cause else "")


class Challenges:
    """HTTP-01 tokens on the host, where the edge serves them; removed when done."""

    def __init__(self, runner: Runner, settings: Settings):
        self.runner, self.root = runner, edge_path(settings, CHALLENGE_ROOT, CHALLENGE_PATH)
        self.written: List[str] = []

    def put(self, token_path: str, validation: str) -> None:
        if not self.written:
            self.runner.run(cmd("install", "-d", "-m", "0755", "--", self.root),
                            "creating the ACME challenge folder")
        path = posixpath.join(self.root, posixpath.basename(token_path))
        self.runner.put(path, validation, 0o644)
        self.written.append(path)

    def clean(self) -> None:
        if self.written:
            self.runner.run(cmd("rm", "-f", "--", *self.written), check=False)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass
class Issued:
    fullchain: str
    key: bytes
    account: str = ""      # the ACME account's URL (for a CAA record's accounturi)


def order(settings: Settings, account: ec.EllipticCurvePrivateKey,
          answer: Callable[[str, str], None]) -> Issued:
    """One certificate for STAGING_URL's host from ACME_DIRECTORY, HTTP-01 answered through
    `answer(token path, validation)`. Raises DeployError with one line on any failure."""
    # imported here: only a deploy with HTTPS needs the ACME client
    import josepy as jose
    import requests
    from acme import challenges, client, crypto_util, errors, messages

    name = domain(settings)
    jwk = jose.JWKEC(key=account)
    try:
        net = client.ClientNetwork(jwk, alg=jose.ES256, user_agent="classroom-manager-deploy")
        acme = client.ClientV2(client.ClientV2.get_directory(settings.ACME_DIRECTORY, net), net)
        contact = (f"mailto:{settings.ACME_EMAIL}",) if settings.ACME_EMAIL else ()
        try:
            net.account = acme.new_account(messages.NewRegistration(
                contact=contact, terms_of_service_agreed=True))
        except errors.ConflictError as known:       # this key's account exists: use it
            net.account = messages.RegistrationResource(uri=known.location,
                                                        body=messages.Registration())
        key = new_key()
        placed = acme.new_order(crypto_util.make_csr(key_pem(key), [name]))
        for authz in placed.authorizations:
            if authz.body.status == messages.STATUS_VALID:
                continue                            # validated recently: nothing to answer
            http01 = next((c for c in authz.body.challenges
                           if isinstance(c.chall, challenges.HTTP01)), None)
            if http01 is None:
                raise DeployError(f"the ACME server offers no HTTP-01 challenge for {name}")
            response, validation = http01.response_and_validation(jwk)
            answer(http01.chall.path, validation)
            acme.answer_challenge(http01, response)
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_DEADLINE)
        done = acme.poll_and_finalize(placed, deadline)
    except errors.ValidationError as failed:
        problems = [c.error for a in failed.failed_authzrs for c in a.body.challenges if c.error]
        first = problems[0] if problems else None
        raise DeployError(explain(first.code or "", first.detail or "", name) if first
                          else "the ACME server could not validate " + name) from None
    except messages.Error as problem:
        raise DeployError(explain(problem.code or "", problem.detail or "", name)) from None
    except errors.TimeoutError:
        raise DeployError(f"the ACME server did not issue within {ORDER_DEADLINE}s; "
                          "try again (`inv deploy.certificate`)") from None
    except (requests.RequestException, errors.Error) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise DeployError(f"the ACME server at {settings.ACME_DIRECTORY} could not be asked "
                          f"({type(exc).__name__}: {reason})") from None
    return Issued(done.fullchain_pem, key_pem(key), net.account.uri if net.account else "")


def read_host(runner: Runner, settings: Settings) -> Dict[str, str]:
    """https.conf and the certificate it names, as the host has them ("" when absent)."""
    https = runner.run(cmd("cat", edge_path(settings, HTTPS_CONF)), check=False).stdout
    serial = current_serial(https)
    pem = runner.run(cmd("cat", edge_path(settings, TLS_FOLDER, f"{serial}.crt")),
                     check=False).stdout if serial else ""
    return {"https": https, "pem": pem}


def status(runner: Runner, settings: Settings) -> Optional[str]:
    """For `deploy.status`: the certificate the edge serves (EDGE_TLS=acme), or None."""
    if not https_on(settings):
        return None
    cert = parse_certificate(read_host(runner, settings)["pem"])
    now = utc_now()
    return cert.describe(now) if cert else "no certificate yet (the next deploy obtains one)"


def account_key(runner: Runner, settings: Settings) -> ec.EllipticCurvePrivateKey:
    """The ACME account's key, kept on the host (0600); made on the first certificate."""
    path = posixpath.join(settings.STAGING_DIR, ACCOUNT_FILE)
    found = runner.run(cmd("cat", path), check=False)
    if found.ok and found.stdout.strip():
        key = serialization.load_pem_private_key(found.stdout.encode(), None)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key
    key = new_key()
    runner.put(path, key_pem(key), 0o600)
    return key


def install(runner: Runner, settings: Settings, issued: Issued, previous_https: str,
            reload_edge: Callable[[], None]) -> Certificate:
    """The new pair beside the old one, then named in https.conf, then the edge reloads; if
    nginx refuses, the previous https.conf is put back. Older pairs go once the new one serves."""
    cert = parse_certificate(issued.fullchain)
    if cert is None:
        raise DeployError("the ACME server sent no readable certificate")
    tls = edge_path(settings, TLS_FOLDER)
    runner.run(cmd("install", "-d", "-m", "0700", "--", tls), "creating " + tls)
    runner.put(posixpath.join(tls, f"{cert.serial}.key"), issued.key, 0o600)
    runner.put(posixpath.join(tls, f"{cert.serial}.crt"), issued.fullchain, 0o644)
    runner.put(edge_path(settings, HTTPS_CONF), https_conf(cert.serial), 0o644)
    runner.put(edge_path(settings, REDIRECT_CONF), redirect_conf(settings), 0o644)
    try:
        reload_edge()
    except DeployError:
        if previous_https:
            runner.put(edge_path(settings, HTTPS_CONF), previous_https, 0o644)
        else:
            runner.run(cmd("rm", "-f", "--", edge_path(settings, HTTPS_CONF),
                           edge_path(settings, REDIRECT_CONF)), check=False)
        raise
    runner.run(cmd("find", tls, "-maxdepth", "1", "-type", "f", "!", "-name",
                   f"{cert.serial}.*", "-delete"), check=False)
    return cert


def ensure(runner: Runner, settings: Settings, reporter: Reporter,
           reload_edge: Callable[[], None], force: bool = False,
           now: Optional[datetime.datetime] = None) -> str:
    """HTTPS as STAGING_URL asks: a valid certificate in place (obtained or renewed when due),
    or, with EDGE_TLS=none, the edge's https files removed. Returns a line for the summary."""
    now = now or utc_now()
    if not https_on(settings):
        removed = runner.run(cmd("rm", "-fv", "--", edge_path(settings, HTTPS_CONF),
                                 edge_path(settings, REDIRECT_CONF)), "turning HTTPS off")
        if removed.stdout.strip():       # it was on: the edge stops serving it now
            reload_edge()
        return ""
    name = domain(settings)
    found = read_host(runner, settings)
    cert = parse_certificate(found["pem"]) if found["pem"] else None
    why = "asked for with --force" if force else due(cert, name, settings.TLS_RENEW_DAYS, now)
    if why is None:
        runner.put(edge_path(settings, REDIRECT_CONF), redirect_conf(settings), 0o644)
        return "https: " + cert.describe(now) if cert else ""
    if runner.dry_run:
        reporter.note(f"would ask {settings.ACME_DIRECTORY} for a certificate for {name} ({why})")
        return f"https: a certificate for {name} would be obtained"
    with reporter.step(f"obtain a certificate for {name} from {settings.ACME_DIRECTORY} ({why})"):
        challenges = Challenges(runner, settings)
        try:
            issued = order(settings, account_key(runner, settings), challenges.put)
        except DeployError as exc:
            if cert is None or not cert.covers(name) or cert.left(now).total_seconds() <= 0:
                raise DeployError(f"no HTTPS certificate for {name}: {exc}") from None
            reporter.say(f"warning: could not renew the certificate for {name} ({exc}); the "
                         f"edge keeps serving the one it has ({days(cert.left(now))} left)")
            return "https: renewal failed, " + cert.describe(now)
        finally:
            challenges.clean()
        fresh = install(runner, settings, issued, found["https"], reload_edge)
        if issued.account:
            reporter.note(f"ACME account {issued.account} (a CAA record's accounturi: "
                          "docs/DEPLOYMENT.md)")
    return "https: new " + fresh.describe(now)
