"""Every setting against hostile values: each is refused with one clear line that names the
setting (and never shows a secret), or reaches the host intact: in a command whose shell
quoting gives it back unchanged, or in the .env written literally. No traceback either way."""
import io
import shlex

import pytest
import yaml
from dotenv import dotenv_values

from staging_deploy.config.definitions import SETTINGS
from staging_deploy.config.envfile import render_env
from staging_deploy.config.settings import load_settings
from staging_deploy.errors import ConfigError
from staging_deploy.report import Reporter
from staging_deploy.story.deploy import deploy_staging
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
        ("STAGING_URL", "https://x.example/'\nJWT_SECRET='y", "must be an http(s) URL"),
        ("DB_USER", "o'brien", "must be a PostgreSQL name"),
        ("STAGING_DIR", "/", "at least two levels deep"),
        ("STAGING_DIR", "/home", "at least two levels deep"),
        ("STAGING_DIR", "/opt/../etc", "normalized"),
        ("STAGING_DIR", "/etc/app", "outside the system's directories"),
        ("STAGING_DIR", "/tmp/app", "must not be under /tmp"),
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
        # issue 29: the host and port reach the edge's nginx config (the HTTPS redirect)
        ("STAGING_URL", "https://staging.example.com:443$http_x_evil", "a host name (or IP"),
        ("STAGING_URL", "https://staging.example.com;return 302 x", "must be an http(s) URL"),
        ("STAGING_URL", "https://{evil}.example.com", "a host name (or IP"),
        ("STAGING_URL", "https://staging.example.com:99999", "a host name (or IP"),
        ("STAGING_URL", "https://staging.example.com/a$b", "a plain path"),
        ("STAGING_URL", "https://staging.example.com/#x", "a plain path"),
        ("ACME_DIRECTORY", "https://acme.example/dir;x", "a host name (or IP"),
    ]:
        env = dict(environ, **{name: value})
        with pytest.raises(ConfigError) as refused:
            load_settings(defaults, env)
        assert expected in str(refused.value), (name, value, str(refused.value))


def test_loopback_webhooks_and_apis_may_be_plain_http(defaults, environ):
    environ.update(STAGING_WEBHOOK_URL="http://127.0.0.1:9/hook", GITHUB_API_URL="http://localhost:9")
    settings = load_settings(defaults, environ)
    assert settings.STAGING_WEBHOOK_URL == "http://127.0.0.1:9/hook"


# invoke.yaml keys (and what Invoke would take from INVOKE_DEPLOY_* variables): each refused in
# one line naming the key. The review's cases first, then classes of our own.
YAML_CASES = [
    ("entry_service", "web; } location /x { root /; ", "replaced by deploy.routes"),
    ("routes", [{"path": "/", "service": "web;}", "port": 80}], "must be {path: /api/"),
    ("routes", [{"path": "/ {", "service": "web", "port": 80}], "must be {path: /api/"),
    ("health_path", "@host/x", "health_path '@host/x' must be a path"),
    ("health_interval", 0, "health_interval must be a number of seconds from 0.1 to 60"),
    ("health_interval", -1, "health_interval must be a number"),
    ("health_interval", float("nan"), "health_interval must be a number"),
    ("health_interval", "1", "health_interval must be a number"),
    ("app_env", "NODE_ENV=staging", "deploy.app_env must be {clear:"),
    ("app_env", {"clear": ["NODE_ENV"]}, "deploy.app_env must be {clear:"),
    ("app_env", {"clear": {"A": {"nested": 1}}}, "deploy.app_env must be {clear:"),
    ("app_env", {"secrets": ["JWT_SECRET"]}, "deploy.app_env must be {clear:"),
    ("ci_checks", "Lint and unit tests", "deploy.ci_checks must be a list"),
    ("ci_checks", ["a\nb"], "deploy.ci_checks must be a list"),
    ("migrate_command", "migrate", "deploy.migrate_command must be a command as a list"),
    ("migrate_entrypoint", ["sh"], "deploy.migrate_entrypoint must be a program"),
    ("migrate_timeout", 0, "deploy.migrate_timeout must be a number of seconds"),
    ("services", {"web": {"context": "../x"}}, "context must be `.` or a folder"),
    ("services", {"web": {"context": ".", "args": {"A": "x\ny"}}}, "args must map build-arg"),
    ("services", {"web": {"context": ".", "target": "a b"}}, "target must be a stage name"),
    ("services", {"web": {"context": ".", "secrets": ["lower"]}}, "secrets must list upper-case"),
    ("services", {"web": {"context": ".", "ports": [80]}}, "only the keys args, context"),
    ("migrate_command", ["migrate", "x\ny"], "deploy.migrate_command must be"),
    ("migrate_check_command", [1], "deploy.migrate_check_command must be"),
    ("project", "Classroom Manager", "deploy.project must be a compose project name"),
    ("project", "x;rm -rf /", "deploy.project must be"),
    ("compose_dir", "../elsewhere", "deploy.compose_dir must be a normalised path"),
    ("compose_dir", ["compose"], "deploy.compose_dir must be"),
    ("services", {"web": {"context": "/etc"}}, "deploy.services must be a mapping"),
    ("services", {"web": {"context": "app", "args": "x"}}, "deploy.services must be"),
    ("services", {"Web App": {"context": "app"}}, "deploy.services must be"),
    ("services", {}, "deploy.services must be"),
    ("services", {"web": {"context": "app", "dockerfile": "../Dockerfile"}}, "deploy.services"),
    ("data_services", "postgres", "deploy.data_services must be a list"),
    ("data_services", ["postgres", "postgres"], "each once"),
    ("data_services", ["Postgres"], "deploy.data_services must be"),
    ("database_service", "pg; rm", "deploy.database_service must be a service name"),
    ("log_service", "", "deploy.log_service must be a service name"),
    ("migrate_service", None, "deploy.migrate_service must be"),
    ("ci_branch", "--upload-pack=x", "deploy.ci_branch must be a branch name"),
    ("ci_branch", "a..b", "deploy.ci_branch must be"),
    ("connect_timeout", 0, "deploy.connect_timeout must be a number of seconds"),
    ("command_timeout", float("inf"), "deploy.command_timeout must be"),
    ("command_timeout", True, "deploy.command_timeout must be"),
    ("health_body", ["story"], "deploy.health_body must be text"),
    ("healthpath", "/health", "deploy.healthpath is not a setting of this tool"),
    ("lock_max_age", 1, "LOCK_MAX_AGE=1 must be at least"),
    ("watch_seconds", [10], "WATCH_SECONDS="),
    ("staging_port", "22; id", "STAGING_PORT="),
]


@pytest.mark.parametrize("key,value,expected", YAML_CASES,
                         ids=[f"{k}={str(v)[:20]}" for k, v, _ in YAML_CASES])
def test_a_hostile_invoke_yaml_key_is_refused_in_one_line_naming_it(defaults, environ, key, value,
                                                                   expected):
    declared = dict(defaults, **{key: value})
    with pytest.raises(ConfigError) as refused:
        load_settings(declared, environ)
    message = str(refused.value)
    assert expected in message and "\n" not in message, message


def test_invoke_deploy_variables_are_refused_naming_them(defaults, environ):
    """Invoke copies INVOKE_DEPLOY_<KEY> over invoke.yaml unchecked: the tool refuses them."""
    environ["INVOKE_DEPLOY_HEALTH_INTERVAL"] = "0"
    with pytest.raises(ConfigError, match="INVOKE_DEPLOY_HEALTH_INTERVAL: invoke.yaml keys are "
                                          "not read from INVOKE_DEPLOY_"):
        load_settings(defaults, environ)


@pytest.mark.parametrize("actor", ["dependabot[bot]", "github-merge-queue[bot]", "octo-cat"])
def test_github_actors_bots_included_are_registry_users(defaults, environ, actor):
    environ.update(REGISTRY_USER=actor, REGISTRY_PASSWORD="ghs_token_123456")
    assert load_settings(defaults, environ).REGISTRY_USER == actor


def test_the_https_redirect_is_built_from_the_checked_host_and_port(defaults, environ):
    from staging_deploy.compose.certificate import origin
    for url, expected in (("https://staging.example.com", "https://staging.example.com"),
                          ("https://Staging.Example.com:8443/app", "https://staging.example.com:8443"),
                          ("https://[::1]:8443", "https://[::1]:8443")):
        settings = load_settings(defaults, dict(environ, STAGING_URL=url))
        assert origin(settings) == expected


def test_a_service_name_with_a_dash_names_its_image_by_a_variable_every_consumer_reads(
        defaults, environ):
    """issue 29: `api-gw` -> API_GW_IMAGE in the release's .env, in the Swarm one-off and in the
    slot file init writes (a shell would run `API-GW_IMAGE=...` as a command)."""
    from staging_deploy.adopt.adoption import Adoption, SlotService
    from staging_deploy.adopt.render import slot_file
    from staging_deploy.config.declared import image_variable
    from staging_deploy.swarm import stacks
    declared = dict(defaults, services={"api-gw": {"context": "."}},
                    routes=[{"path": "/", "service": "api-gw", "port": 80}])
    settings = load_settings(declared, environ)
    assert image_variable("api-gw") == "API_GW_IMAGE"
    assert "API_GW_IMAGE" in settings.app_env("a" * 40)
    assert not any("-" in name for name in settings.app_env("a" * 40))
    one_off = stacks.one_off(settings, "/d", image_variable("api-gw"), ["migrate"], [], "net")
    assert '"$API_GW_IMAGE"' in one_off.render()
    slot = slot_file(Adoption({}, [SlotService("api-gw", {})], [], ""))
    assert "${API_GW_IMAGE:?" in slot
