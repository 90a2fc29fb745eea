"""Every setting the tool reads from the environment: its variable, invoke.yaml key, meaning
and how its value is checked; the generated settings table.
"""
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional
from urllib.parse import urlparse

from ..transport.known_hosts import known_hosts_entries

SHA_RE = re.compile(r"[0-9a-f]{40}")      # always with fullmatch: `$` lets a final newline in


def sha_or_empty(value: object) -> str:
    """A full sha read back from the host (a label, a ledger line), else "" (it then names no
    release: it never becomes a path or a git argument)."""
    return value if isinstance(value, str) and SHA_RE.fullmatch(value) else ""


def is_sha(value: object) -> bool:
    """A full commit sha, whatever `value` is (text read back from a host included)."""
    return bool(sha_or_empty(value))

# Top-level directories of the system (and parents of many): never a deploy directory.
SYSTEM_DIRS = {"bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "root",
               "run", "sbin", "sys", "usr", "var"}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# A secret shorter than this is refused: too short to be one, and the redactor would mask its
# few characters wherever they appear (`took 11.1s` with a secret of "1").
SECRET_MIN = 8
SHORT_SECRET = (f"is shorter than {SECRET_MIN} characters: too short to be a secret (and it "
                "would be masked in ordinary text); use a longer, random value")


def _text(value: str) -> str:
    return value


def _matching(pattern: str, what: str) -> Callable[[str], str]:
    """A parser that accepts the whole value matching `pattern`, else says `must be <what>`."""
    compiled = re.compile(pattern)

    def parse(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"must be {what}")
        return value
    return parse


def _number(value: str, kind: Callable[[str], Any] = float) -> Any:
    try:
        number = kind(value)
    except ValueError:
        raise ValueError("must be a number") from None
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return number


def _seconds_between(low: float, high: float, zero: bool = False) -> Callable[[str], float]:
    def parse(value: str) -> float:
        number = _number(value)
        if not (low <= number <= high or (zero and number == 0)):
            raise ValueError(f"must be a number of seconds from {low:g} to {high:g}"
                             + (" (or 0)" if zero else ""))
        return number
    return parse


def _yes_no(value: str) -> bool:
    if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
        raise ValueError("must be true or false")
    return value.lower() in ("true", "yes", "1")


def _count(value: str) -> int:
    number = _number(value, int)
    if not 1 <= number <= 100:
        raise ValueError("must be a whole number from 1 to 100")
    return number


def _megabytes(value: str) -> int:
    number = _number(value, int)
    if not 0 <= number <= 100_000_000:
        raise ValueError("must be a whole number of megabytes from 0 to 100000000")
    return number


def _days(value: str) -> float:
    number = _number(value)
    if not 0 < number <= 60:
        raise ValueError("must be a number of days from 0 to 60 (such as 30)")
    return number


def _port(value: str) -> int:
    number = _number(value, int)
    if not 0 < number < 65536:
        raise ValueError("must be a port number (1-65535)")
    return number


# A URL's host and port, as the edge's nginx config may receive them (STAGING_URL's origin is
# the HTTPS redirect's target): a host name or an IP address, a port of digits, nothing else.
NETLOC = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*"
                    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
URL_PATH = re.compile(r"(/[A-Za-z0-9._~%/-]*)?")


def _url(value: str, token: bool = False) -> str:
    """An http(s) URL; one that carries a token (`token`) must be https unless on loopback."""
    parsed = urlparse(value)
    if (parsed.scheme not in ("http", "https") or not parsed.hostname
            or re.search(r"[\s'\"\\<>`]", value)):
        raise ValueError("must be an http(s) URL such as https://staging.example.com")
    if parsed.username or parsed.password:
        raise ValueError("must not carry a user or password (user:pass@): it would be printed")
    if not NETLOC.fullmatch(parsed.netloc) or not URL_PATH.fullmatch(parsed.path) \
            or parsed.params or parsed.fragment or not 0 < port_of(parsed.netloc) < 65536:
        raise ValueError("must be an http(s) URL of a host name (or IP address), an optional "
                         "port number and a plain path, such as https://staging.example.com")
    if token and parsed.scheme != "https" and parsed.hostname not in LOOPBACK:
        raise ValueError("must be https (it carries a token), except on 127.0.0.1")
    return value.rstrip("/")


def port_of(netloc: str) -> int:
    """The port a checked netloc names (1 when it names none): urlparse's own raises."""
    digits = re.search(r":([0-9]+)$", netloc)
    return int(digits.group(1)) if digits else 1


def _token_url(value: str) -> str:
    return _url(value, token=True)


def _image_name(value: str) -> str:
    value = value.lower()  # github.repository keeps the owner's capitals; registries want none
    if not re.fullmatch(r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)+", value):
        raise ValueError("must be owner/repo in lower case, as in ghcr.io/<owner>/<repo>")
    return value


def _staging_dir(value: str) -> str:
    """An absolute, normalized directory at least two levels deep, outside the system's own."""
    path = value.rstrip("/")
    parts = path.split("/")[1:]
    if not value.startswith("/") or (path and not re.fullmatch(r"(/[A-Za-z0-9._-]+)+", path)) \
            or any(part.startswith("-") for part in parts):
        raise ValueError("must be an absolute path of letters, digits, '.', '_' and '-' "
                         "(such as /opt/classroom-manager)")
    if any(part in (".", "..") for part in parts):
        raise ValueError("must be a normalized path (no . or ..)")
    if parts and parts[0] == "tmp":
        raise ValueError("must not be under /tmp: anyone on the host may write there (such as "
                         "/opt/classroom-manager or /srv/app)")
    if len(parts) < 2 or parts[0] in SYSTEM_DIRS:
        raise ValueError("must be a directory of its own at least two levels deep, outside the "
                         "system's directories (such as /opt/classroom-manager or /srv/app)")
    return path


_hostname = _matching(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})|\[?[0-9A-Fa-f:.]+\]?",
                      "a host name or IP address")
_unix_user = _matching(r"[a-z_][a-z0-9_-]{0,31}", "a user name (lower case letters, digits, _ "
                       "and -, not starting with -)")
# GitHub's bot actors (dependabot[bot], github-merge-queue[bot]) push as github.actor too
_registry_user = _matching(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}(\[bot\])?", "a registry user name")
_registry = _matching(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?",
                      "a registry host such as ghcr.io or localhost:5000")
_identifier = _matching(r"[A-Za-z_][A-Za-z0-9_]{0,62}", "a PostgreSQL name (letters, digits, _)")
_repository = _matching(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", "owner/repo")
def _known_hosts(value: str) -> str:
    """known_hosts lines, as ssh-keyscan prints them."""
    known_hosts_entries(value)
    return value


_image_ref = _matching(r"[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
                       r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?",
                       "an image reference such as postgres:16-alpine")


@dataclass(frozen=True)
class Setting:
    """One setting: its environment variable, its invoke.yaml key (if any) and how to check it."""
    env: str
    help: str
    group: str                     # which tasks need it: host, build, app, setup, or "" (optional)
    yaml_key: Optional[str] = None  # its default lives in invoke.yaml under deploy.<yaml_key>
    parse: Callable[[str], object] = _text
    secret: bool = False


def is_swarm(values: Mapping[str, Any]) -> bool:
    """Whether DEPLOY_TARGET in `values` is `swarm` (else compose: one server). The one place
    that compares it; everything else asks `Settings.on_swarm`."""
    return values.get("DEPLOY_TARGET") == "swarm"


SETTINGS = [
    Setting("DEPLOY_TARGET", "where releases run: `compose` (one server) or `swarm` (a Docker "
            "Swarm; STAGING_HOST is a manager)", "", "target",
            _matching(r"compose|swarm", "compose or swarm")),
    Setting("STAGING_HOST", "staging server hostname or IP", "host", parse=_hostname),
    Setting("STAGING_PORT", "SSH port", "", "staging_port", _port),
    Setting("STAGING_USER", "SSH user that runs the deploy (in the docker group)", "host",
            parse=_unix_user),
    Setting("STAGING_SSH_KEY", "the private key itself (as CI secrets hold it) or a path to it",
            "host", secret=True),
    Setting("STAGING_KNOWN_HOSTS", "pinned host key line(s), as `ssh-keyscan -p PORT HOST` prints them",
            "host",
            parse=_known_hosts),
    Setting("STAGING_URL", "public base URL of the staging app", "host", parse=_url),
    Setting("SETUP_USER", "admin user with passwordless sudo, for `inv staging.setup`", "setup",
            parse=_unix_user),
    Setting("SETUP_SSH_KEY", "that admin's private key (or a path to it)", "setup", secret=True),
    Setting("STAGING_DIR", "deploy directory on the host (default: /opt/<project>)", "",
            "staging_dir", _staging_dir),
    Setting("REGISTRY", "container registry host", "", "registry", _registry),
    Setting("REGISTRY_PLAIN_HTTP", "the registry speaks plain http (a local test registry; the "
            "testbed sets it)", "", "registry_plain_http", _yes_no),
    Setting("IMAGE_NAME", "owner/repo; images are `REGISTRY/IMAGE_NAME-<service>:staging-<sha>`",
            "build",
            parse=_image_name),
    Setting("REGISTRY_USER", "registry user for pushing (unset: use the existing `docker login`)",
            "",
            parse=_registry_user),
    Setting("REGISTRY_PASSWORD", "registry token for pushing", "", secret=True),
    Setting("REGISTRY_PULL_USER", "read-only registry user for the host (unset: the host's own login)",
            "", parse=_registry_user),
    Setting("REGISTRY_PULL_PASSWORD", "read-only registry token for the host", "", secret=True),
    Setting("APP_PORT", "public port the edge proxy publishes on the host", "", "app_port", _port),
    Setting("EDGE_TLS", "`acme`: the edge serves HTTPS for STAGING_URL's host (https) with a "
            "certificate it obtains and renews by ACME; `none`: plain HTTP (TLS, if any, ends in "
            "front of the server)", "", "edge_tls", _matching(r"none|acme", "none or acme")),
    Setting("HTTPS_PORT", "public HTTPS port the edge publishes (served with EDGE_TLS=acme)",
            "", "https_port", _port),
    Setting("ACME_DIRECTORY", "ACME server that issues the edge's certificate (EDGE_TLS=acme)",
            "", "acme_directory", _token_url),
    Setting("ACME_EMAIL", "contact address for the ACME account (expiry notices)", "",
            parse=_matching(r"[^@\s'\"]+@[^@\s'\"]+\.[^@\s'\"]+", "an e-mail address")),
    Setting("TLS_RENEW_DAYS", "days before expiry the certificate is renewed (by a deploy or "
            "`inv deploy.certificate`)", "", "tls_renew_days", _days),
    Setting("PREVIEW_PORT", "host-loopback port where the deploy checks a release before the switch",
            "", "preview_port", _port),
    Setting("HEALTH_TIMEOUT", "seconds to wait for a healthy release", "", "health_timeout",
            _seconds_between(1, 3600)),
    Setting("HEALTH_SETTLE", "seconds a release must stay healthy before it counts", "",
            "health_settle", _seconds_between(0, 600)),
    Setting("WATCH_SECONDS", "seconds a release is watched after the switch, the previous one "
            "standing by (0: no window)", "", "watch_seconds", _seconds_between(0, 3600)),
    Setting("KEEP_RELEASES", "good releases whose images and backups prune keeps", "",
            "keep_releases", _count),
    Setting("LOCK_MAX_AGE", "seconds after which a held deploy lock is stale and is taken over",
            "",
            "lock_max_age", _seconds_between(1, 7 * 86400)),
    Setting("STAGING_WEBHOOK_URL", "Slack-compatible webhook told of every deploy's and rollback's "
            "result", "",
            parse=_token_url, secret=True),
    Setting("GITHUB_TOKEN", "token for the CI check (`--require-ci`, always on in Actions)",
            "", secret=True),
    Setting("GITHUB_REPOSITORY", "owner/repo whose CI is checked (Actions sets it)", "",
            parse=_repository),
    Setting("GITHUB_RUN_ID", "the workflow run whose own CI checks count (Actions sets it; "
            "unset in a shell: any run's)", "",
            parse=_matching(r"[0-9]{1,20}", "a workflow run id (a number)")),
    Setting("GITHUB_API_URL", "GitHub API base URL (Actions sets it)", "", "github_api",
            _token_url),
    Setting("DB_USER", "PostgreSQL user", "", "db_user", _identifier),
    Setting("DB_NAME", "PostgreSQL database", "", "db_name", _identifier),
    Setting("DB_PASSWORD", "PostgreSQL password", "app", secret=True),
    Setting("DATABASE_URL", "backend's database URL (default: built from `DB_*`)", "", secret=True),
    Setting("POSTGRES_IMAGE", "PostgreSQL image", "", "postgres_image", _image_ref),
    Setting("REDIS_IMAGE", "Redis image", "", "redis_image", _image_ref),
    Setting("EDGE_IMAGE", "nginx image of the edge proxy that switches releases", "", "edge_image",
            _image_ref),
    Setting("DOCKER_CLI_IMAGE", "an image with the docker CLI: the swarm target's prune runs "
            "it on every node", "", "docker_cli_image", _image_ref),
    Setting("BUILD_PLATFORM", "os/arch the images are built for, the staging server's (the host "
            "refuses an image for another; one in the registry for another is built again)", "",
            "platform",
            _matching(r"linux/(amd64|arm64(/v8)?|arm/v[67]|386|ppc64le|s390x|riscv64)",
                      "a platform such as linux/amd64 or linux/arm64")),
    Setting("DISK_MARGIN", "megabytes the deploy keeps free on the host: it refuses, before "
            "anything changes, a pull or a dump that would eat into them", "", "disk_margin",
            _megabytes),
    Setting("LOG_MAX_SIZE", "size at which a container's log file is rotated (every container "
            "the deploy starts: json-file driver)", "", "log_max_size",
            _matching(r"[1-9][0-9]{0,5}[kmg]", "a size such as 10m (a number, then k, m or g)")),
    Setting("LOG_MAX_FILE", "log files kept per container (the oldest is deleted)", "",
            "log_max_file", _count),
]
SETTINGS_BY_ENV = {s.env: s for s in SETTINGS}
REQUIRED_BY = {"host": "yes", "build": "yes", "app": "yes", "setup": "setup", "": ""}


def settings_table(defaults: Mapping) -> str:
    """docs/CONFIGURATION.md's table of settings, from their definitions and invoke.yaml's defaults."""
    def row(*cells: str) -> str:
        return "|" + "".join(f" {cell} |" if cell else " |" for cell in cells)

    def default(key: Optional[str]) -> str:
        if not key:
            return ""
        value = defaults.get(key)
        if value in (None, ""):
            return f"`{key}`"
        return f"`{key}` ({str(value).lower() if isinstance(value, bool) else value})"

    rows = [row("variable", "required", "invoke.yaml key", "secret", "meaning"), "|---|---|---|---|---|"]
    rows += [row(f"`{s.env}`", REQUIRED_BY[s.group], default(s.yaml_key),
                 "secret" if s.secret else "", s.help) for s in SETTINGS]
    rows.append(row("`DEPLOY_ENV_FILE`", "", "", "", "dotenv file to read instead of `.env`"))
    return "\n".join(rows) + "\n"


