import pytest

from staging_deploy.config.settings import load_settings, read_environment, validate_sha
from staging_deploy.errors import ConfigError


def test_valid_environment_loads_with_defaults_from_invoke_yaml(settings):
    assert settings.STAGING_PORT == 22
    assert settings.STAGING_DIR == "/opt/classroom-manager"
    assert settings.REGISTRY == "ghcr.io"
    assert settings.STAGING_URL == "https://staging.example.com"  # trailing slash dropped
    assert settings.HEALTH_TIMEOUT == 30
    assert [s.name for s in settings.services] == ["frontend", "backend"]
    assert settings.image_ref("backend", "a" * 40) == \
        "ghcr.io/acme/classroom-manager-backend:staging-" + "a" * 40


def test_every_missing_setting_is_listed_in_one_error(defaults):
    with pytest.raises(ConfigError) as caught:
        load_settings(defaults, {})
    message = str(caught.value)
    for name in ("STAGING_HOST", "STAGING_USER", "STAGING_SSH_KEY", "STAGING_KNOWN_HOSTS",
                 "STAGING_URL", "IMAGE_NAME", "DB_PASSWORD", "JWT_SECRET"):
        assert name in message
    assert message.count("\n") == 0


def test_only_the_groups_a_task_needs_are_required(defaults):
    with pytest.raises(ConfigError) as caught:
        load_settings(defaults, {}, groups=("host",))
    assert "STAGING_HOST" in str(caught.value)
    assert "IMAGE_NAME" not in str(caught.value)


def test_environment_overrides_invoke_yaml(defaults, environ):
    environ.update(STAGING_PORT="2222", HEALTH_TIMEOUT="12.5", REGISTRY="localhost:5000")
    settings = load_settings(defaults, environ)
    assert (settings.STAGING_PORT, settings.HEALTH_TIMEOUT, settings.REGISTRY) == \
        (2222, 12.5, "localhost:5000")


@pytest.mark.parametrize("name,value,expected", [
    ("STAGING_PORT", "ssh", "STAGING_PORT='ssh' must be a number"),
    ("STAGING_PORT", "70000", "must be a port number"),
    ("STAGING_URL", "staging.example.com", "must be an http(s) URL"),
    ("IMAGE_NAME", "acme", "must be owner/repo"),
    ("STAGING_DIR", "opt/app", "must be an absolute path"),
    ("HEALTH_TIMEOUT", "-1", "must be a number of seconds from 1 to 3600"),
])
def test_malformed_values_are_named_with_the_fix(defaults, environ, name, value, expected):
    environ[name] = value
    with pytest.raises(ConfigError) as caught:
        load_settings(defaults, environ)
    assert expected in str(caught.value)


def test_malformed_secret_is_not_echoed(defaults, environ):
    environ["DB_PASSWORD"] = "it's-\0secret"
    with pytest.raises(ConfigError) as caught:
        load_settings(defaults, environ)
    assert "DB_PASSWORD must not contain a NUL" in str(caught.value)
    assert "secret" not in str(caught.value).replace("a secret", "")


@pytest.mark.parametrize("name", ["DB_PASSWORD", "JWT_SECRET", "REGISTRY_PASSWORD", "GITHUB_TOKEN"])
def test_a_secret_shorter_than_eight_characters_is_refused_without_showing_it(defaults, environ,
                                                                              name):
    environ.update({name: "1234567", "REGISTRY_USER": "bot"})
    with pytest.raises(ConfigError) as caught:
        load_settings(defaults, environ)
    message = str(caught.value)
    assert f"{name} is shorter than 8 characters" in message and "1234567" not in message
    assert "\n" not in message


def test_registry_credentials_come_in_pairs(defaults, environ):
    environ["REGISTRY_USER"] = "bot"
    with pytest.raises(ConfigError, match="REGISTRY_USER and REGISTRY_PASSWORD must be set together"):
        load_settings(defaults, environ)


def test_ssh_key_may_be_a_path(defaults, environ, tmp_path):
    key = tmp_path / "id"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nxyz\n-----END OPENSSH PRIVATE KEY-----\n")
    environ["STAGING_SSH_KEY"] = str(key)
    assert "xyz" in load_settings(defaults, environ).STAGING_SSH_KEY
    environ["STAGING_SSH_KEY"] = str(tmp_path / "missing")
    with pytest.raises(ConfigError, match="neither a private key"):
        load_settings(defaults, environ)


def test_database_url_is_derived_and_escaped(defaults, environ):
    environ["DB_PASSWORD"] = "p@ss:word"
    settings = load_settings(defaults, environ)
    assert settings.DATABASE_URL == "postgresql://classroom:p%40ss%3Aword@postgres:5432/classroom"


def test_secrets_lists_every_secret_value(settings):
    assert "s3cret-db-pw" in settings.secrets
    assert "jwt-very-secret" in settings.secrets
    assert settings.DATABASE_URL in settings.secrets
    assert "deploy" not in settings.secrets


def test_app_env_names_the_exact_release_images(settings):
    env = settings.app_env("b" * 40)
    assert env["BACKEND_IMAGE"].endswith(":staging-" + "b" * 40)
    assert env["FRONTEND_IMAGE"].startswith("ghcr.io/acme/classroom-manager-frontend:")
    assert env["JWT_SECRET"] == "jwt-very-secret"
    assert "staging-latest" not in "".join(env.values())


def test_dotenv_file_is_read_and_environment_wins(tmp_path):
    (tmp_path / ".env").write_text("STAGING_HOST=from-file\nSTAGING_USER=file-user\n")
    merged = read_environment({"STAGING_USER": "env-user"}, tmp_path)
    assert merged["STAGING_HOST"] == "from-file"
    assert merged["STAGING_USER"] == "env-user"


def test_named_env_file_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_environment({"DEPLOY_ENV_FILE": "nope.env"}, tmp_path)


@pytest.mark.parametrize("sha,exists,expected", [
    (None, True, "--sha is required"),
    ("abc123", True, "not a full 40-character"),
    ("A" * 40, True, "not a full 40-character"),
    ("a" * 40, False, "not a commit in this repository"),
    ("a" * 40, True, None),
])
def test_sha_validation(sha, exists, expected):
    problem = validate_sha(sha, lambda s: exists)
    assert (problem is None) if expected is None else (expected in problem)


def test_image_name_from_github_repository_is_lower_cased(defaults, environ):
    environ["IMAGE_NAME"] = "Nguyen-Mau-Anh/Classroom-Manager"
    assert load_settings(defaults, environ).IMAGE_NAME == "nguyen-mau-anh/classroom-manager"


def test_the_apps_environment_is_declared_in_invoke_yaml_not_in_the_tool(defaults, environ):
    """A variable the tool has never heard of: declared, validated, written, masked."""
    app_env = {"clear": dict(defaults["app_env"]["clear"], ERROR_TRACKER_DSN="https://o1.example/7",
                             FEATURE_X=""),
               "secret": ["JWT_SECRET", "MAIL_PASSWORD"]}
    declared = dict(defaults, app_env=app_env)
    with pytest.raises(ConfigError, match="missing: MAIL_PASSWORD"):
        load_settings(declared, environ)
    environ.update(MAIL_PASSWORD="mail-s3cret", FEATURE_X="on", LOG_LEVEL="debug")
    settings = load_settings(declared, environ)
    env = settings.app_env("b" * 40)
    assert env["ERROR_TRACKER_DSN"] == "https://o1.example/7"          # the default
    assert (env["FEATURE_X"], env["LOG_LEVEL"]) == ("on", "debug")       # the environment wins
    assert env["MAIL_PASSWORD"] == "mail-s3cret" and "mail-s3cret" in settings.secrets
    assert env["STAGING_URL"] == "https://staging.example.com"           # CORS_ORIGIN's fallback
    environ["MAIL_PASSWORD"] = "it's\0nul"
    with pytest.raises(ConfigError) as refused:
        load_settings(declared, environ)
    assert "MAIL_PASSWORD must be at most" in str(refused.value) and "nul" not in str(refused.value)
    for bad in ("lower_case", "STAGING_HOST"):
        broken = dict(defaults, app_env={"clear": {bad: "x"}, "secret": []})
        with pytest.raises(ConfigError, match="invoke.yaml app_env"):
            load_settings(broken, environ)


def test_every_setting_is_declared_with_the_type_its_parser_returns():
    import typing

    from staging_deploy.config.definitions import SETTINGS
    from staging_deploy.config.settings import Settings
    hints = typing.get_type_hints(Settings)
    declared = {name for name, hint in hints.items() if typing.get_origin(hint) is typing.ClassVar}
    assert declared == {s.env for s in SETTINGS}
    for s in SETTINGS:
        kind = typing.get_type_hints(s.parse).get("return", str)
        required = bool(s.yaml_key) or s.group != ""
        assert hints[s.env] == typing.ClassVar[kind if required else typing.Optional[kind]], s.env


def test_routes_and_the_health_contract_come_from_invoke_yaml(settings):
    from staging_deploy.config.declared import Route
    from staging_deploy.story.health import HealthContract
    assert settings.routes == (Route("/api/", "backend", 4000), Route("/", "frontend", 80))
    assert settings.health == HealthContract("story", "")


@pytest.mark.parametrize("changes, expected", [
    ({"routes": []}, "deploy.routes must list where requests go"),
    ({"routes": [{"path": "/", "service": "web"}]}, "must be {path: /api/, service: backend, port: 4000}"),
    ({"routes": [{"path": "/x; }", "service": "web", "port": 80}]}, "a path of letters, digits"),
    ({"routes": [{"path": "/", "service": "web;", "port": 80}]}, "a service name in lower case"),
    ({"routes": [{"path": "/", "service": "web", "port": 70000}]}, "a port number"),
    ({"routes": ["/ web:80"]}, "must be {path: /api/"),
    ({"routes": [{"path": "/", "service": "a", "port": 1}, {"path": "/", "service": "b", "port": 2}]},
     "path / is routed twice"),
    ({"routes": [{"path": "/app/", "service": "web", "port": 80}]},
     "no route serves health_path /api/health"),
    ({"entry_service": "web", "entry_port": 3000},
     "replaced by deploy.routes: write `routes: [{path: /, service: web, port: 3000}]`"),
    ({"health_path": "@evil.example/x"}, "deploy.health_path '@evil.example/x' must be a path"),
    ({"health_body": "maybe"}, "deploy.health_body 'maybe' must be `story`"),
    ({"health_version": "data.version; rm"}, "deploy.health_version 'data.version; rm' must be"),
])
def test_routes_and_health_settings_are_checked_before_anything_runs(defaults, environ, changes,
                                                                     expected):
    with pytest.raises(ConfigError) as caught:
        load_settings(dict(defaults, **changes), environ)
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_an_app_that_reports_its_version_can_have_it_checked(defaults, environ):
    for where in ("data.version", "header:X-App-Version"):
        assert load_settings(dict(defaults, health_version=where), environ).health.version_at == where
