"""Every setting against hostile values: each is refused with one clear line that names the
setting (and never shows a secret), or reaches the host intact: in a command whose shell
quoting gives it back unchanged, or in the .env written literally. No traceback either way."""
import io
import shlex

import pytest
import yaml
from dotenv import dotenv_values

from fabfile.config import SETTINGS, load_settings, render_env
from fabfile.deploy import deploy_staging
from fabfile.errors import ConfigError
from fabfile.report import Reporter
from tests.conftest import ROOT

SHA = "0123456789abcdef0123456789abcdef01234567"
HOSTILE = {
    "quote": "it's",
    "line break": "info\nJWT_SECRET=pwned",
    "leading dash": "-oProxyCommand=touch_pwned",
    "command substitution": "$(touch /tmp/pwned)",
    "space": "two words",
    "empty": "",
    "very long": "x" * 5000,
}
# Settings whose value is a key or a file path, read locally and never sent anywhere as text.
LOCAL_ONLY = {"STAGING_SSH_KEY", "SETUP_SSH_KEY"}
APP_ENV = yaml.safe_load((ROOT / "invoke.yaml").read_text())["deploy"]["app_env"]
# (name, secret): the tool's settings and the app's declared variables alike
NAMES = [(s.env, s.secret) for s in SETTINGS if s.env not in LOCAL_ONLY] + \
        [(name, False) for name in APP_ENV["clear"]] + [(name, True) for name in APP_ENV["secret"]]


def dry_run(settings) -> str:
    out = io.StringIO()
    deploy_staging(settings, SHA, reporter=Reporter(settings.secrets, stream=out),
                   dry_run=True)
    return out.getvalue()


@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("name,secret", NAMES, ids=[n for n, _ in NAMES])
def test_a_hostile_value_is_refused_clearly_or_arrives_intact(defaults, environ, name, secret, kind):
    value = HOSTILE[kind]
    environ[name] = value
    try:
        settings = load_settings(defaults, environ)
    except ConfigError as refused:
        message = str(refused)
        assert "\n" not in message and len(message) < 400
        assert name in message or "missing:" in message
        if secret and value:
            assert value not in message
        return
    accepted = settings.app[name].value if name in settings.app else settings.values[name]
    plan = dry_run(settings)
    for line in plan.splitlines():
        assert shlex.split(line) is not None           # every printed command parses back
    if secret:
        assert str(accepted) not in plan if accepted else True   # never in argv nor printed
    elif accepted and str(accepted) in plan:
        commands = [shlex.split(line.split("] ", 1)[1]) for line in plan.splitlines()
                    if line.startswith(("[local] ", "[remote] ")) and str(accepted) in line]
        assert all(any(str(accepted) in word for word in words) for words in commands), plan
    env = settings.app_env(SHA)
    assert dict(dotenv_values(stream=io.StringIO(render_env(env)))) == env


def test_the_reported_injections_are_refused(defaults, environ):
    """The exact values of the security review."""
    for name, value, expected in [
        ("LOG_LEVEL", "info'\nJWT_SECRET='pwned", "LOG_LEVEL must be one line"),
        ("REDIS_URL", "redis://x'\nJWT_SECRET='pwned", "REDIS_URL must be one line"),
        ("STAGING_URL", "https://x.example/'\nJWT_SECRET='y", "must be an http(s) URL"),
        ("DB_USER", "o'brien", "must be a PostgreSQL name"),
        ("STAGING_DIR", "/", "at least two levels deep"),
        ("STAGING_DIR", "/home", "at least two levels deep"),
        ("STAGING_DIR", "/opt/../etc", "normalized"),
        ("STAGING_DIR", "/etc/app", "outside the system's directories"),
        ("STAGING_DIR", "/opt/app\nx", "must be an absolute path"),
        ("REGISTRY", "--help", "must be a registry host"),
        ("STAGING_USER", "-ou0", "must be a user name"),
        ("HEALTH_TIMEOUT", "nan", "finite"),
        ("HEALTH_TIMEOUT", "inf", "finite"),
        ("WATCH_SECONDS", "1e9", "from 0 to 3600"),
        ("STAGING_WEBHOOK_URL", "http://hooks.example.com/T0/B0/x", "must be https"),
        ("GITHUB_API_URL", "http://api.example.com", "must be https"),
        ("STAGING_URL", "https://user:pass@staging.example.com", "must not carry a user"),
        ("STAGING_KNOWN_HOSTS", "@revoked * ssh-ed25519 AAAA", "not a known_hosts entry"),
        ("STAGING_KNOWN_HOSTS", "staging.example.com ssh-ed25519 !!notbase64", "not a known_hosts"),
    ]:
        env = dict(environ, **{name: value})
        with pytest.raises(ConfigError) as refused:
            load_settings(defaults, env)
        assert expected in str(refused.value), (name, value, str(refused.value))


def test_loopback_webhooks_and_apis_may_be_plain_http(defaults, environ):
    environ.update(STAGING_WEBHOOK_URL="http://127.0.0.1:9/hook", GITHUB_API_URL="http://localhost:9")
    settings = load_settings(defaults, environ)
    assert settings.STAGING_WEBHOOK_URL == "http://127.0.0.1:9/hook"
