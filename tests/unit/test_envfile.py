"""Dotenv files: the host's written as Compose reads them (the real parser's round trip is
tests/integration/test_security.py), the user's read literally."""
import io

import pytest
from dotenv import dotenv_values

from staging_deploy.config.envfile import quoted, read_dotenv, render_env, render_sh_env
from staging_deploy.config.settings import load_settings
from staging_deploy.errors import ConfigError


@pytest.mark.parametrize("value,line", [
    ("plain", "'plain'"),
    ("$HOME ${X} #x", "'$HOME ${X} #x'"),              # single quotes: literal for Compose
    ("pw\\", '"pw\\\\"'),                             # `'pw\'` would run on into the next line
    ("it's", "\"it's\""),
    ("it's $HOME", "\"it's $$HOME\""),                 # double quotes interpolate: `$$` is `$`
    ("a\nb", '"a\\nb"'),
    ('x\'"', '"x\'\\""'),
])
def test_a_value_is_quoted_the_way_compose_reads_it_back(value, line):
    assert quoted(value) == line


def test_the_reviews_pair_cannot_add_or_change_a_variable():
    text = render_env({"LOG_LEVEL": "x\\", "NODE_ENV": "DATABASE_URL=postgresql://elsewhere#"})
    assert text.splitlines() == ['LOG_LEVEL="x\\\\"', "NODE_ENV='DATABASE_URL=postgresql://elsewhere#'"]
    # python-dotenv agrees where it reads `\\` as compose-go does (double quotes)
    assert dotenv_values(stream=io.StringIO(text), interpolate=False) == {
        "LOG_LEVEL": "x\\", "NODE_ENV": "DATABASE_URL=postgresql://elsewhere#"}


def test_a_nul_is_refused_naming_the_variable():
    with pytest.raises(ConfigError, match="JWT_SECRET cannot be written"):
        render_env({"JWT_SECRET": "a\0b"})


def test_the_users_env_file_is_read_literally(tmp_path, defaults, environ):
    """A secret holding `${` or `$NAME` reaches the host as written, not expanded."""
    path = tmp_path / ".env"
    path.write_text("DB_PASSWORD='pa${HOME}ss$USER'\nJWT_SECRET=\"jw${PATH}t-secret\"\n")
    assert read_dotenv(path) == {"DB_PASSWORD": "pa${HOME}ss$USER",
                                 "JWT_SECRET": "jw${PATH}t-secret"}
    del environ["DB_PASSWORD"], environ["JWT_SECRET"]
    from staging_deploy.config.settings import read_environment
    settings = load_settings(defaults, read_environment(environ, tmp_path), cwd=tmp_path)
    assert settings.DB_PASSWORD == "pa${HOME}ss$USER"
    assert "DB_PASSWORD='pa${HOME}ss$USER'" in render_env(settings.app_env("0" * 40))


def test_the_swarm_env_file_reads_back_exactly_in_a_posix_shell(tmp_path):
    """The Swarm target's .env is sourced by `sh` (`set -a; . .env`), on the manager: the real
    shell gives every kind of value back unchanged."""
    import subprocess

    from tests.conftest import ENV_VALUES
    env = {f"V{i}": value for i, value in enumerate(ENV_VALUES)}
    (tmp_path / ".env").write_text(render_sh_env(env))
    script = "set -a && . ./.env && set +a && " + " && ".join(
        f'printf "%s\\0" "${name}"' for name in env)
    out = subprocess.run(["sh", "-c", script], cwd=tmp_path, capture_output=True, check=True).stdout
    assert dict(zip(env, out.decode().split("\0"))) == env


def test_a_release_keeps_no_secret_and_the_host_keeps_the_current_ones(settings):
    """Rotation-safe rollback: the secrets live in one host file that every deploy rewrites from
    its settings; a rollback without them (a shell without the app's secrets) keeps the host's."""
    from dataclasses import replace

    from staging_deploy.compose.commands import write_secrets
    public, secret = settings.split_secrets(settings.app_env("a" * 40))
    assert set(secret) == {"DB_PASSWORD", "DATABASE_URL", "JWT_SECRET"}
    assert not set(public) & set(secret) and public["BACKEND_IMAGE"].endswith("a" * 40)
    puts, runs = [], []

    class Host:
        def put(self, path, text, mode=0o600):
            puts.append((path, text, mode))

        def run(self, command, what="", check=True):
            runs.append(command.render())

    assert write_secrets(Host(), settings, render_env)
    assert puts == [("/opt/classroom-manager/secrets.env", render_env(secret), 0o600)]
    without = replace(settings, app={}, values=dict(settings.values, DB_PASSWORD=None))
    assert not write_secrets(Host(), without, render_env)
    assert runs == ["sh -c 'umask 077 && touch -- \"$1\"' sh /opt/classroom-manager/secrets.env"]


def old_parser_reads(line):
    """How compose-go up to 1.15 (Compose up to 2.19) finds the end of a double-quoted value:
    the first quote not preceded by a backslash (joho/godotenv's rule; 1.16 counts the
    backslashes). None where it finds no end ("unterminated quoted value")."""
    name, value = line.split("=", 1)
    if not value.startswith('"'):
        return value
    end = next((i for i in range(1, len(value)) if value[i] == '"' and value[i - 1] != "\\"),
               None)
    return None if end is None else value[1:end]


@pytest.mark.parametrize("value", ["plain", "it's", "a\nb", 'say "hi"', "$HOME's", "pw\\",
                                   "Zq8#pL2v\\", 'x\\"'])
def test_old_compose_misreads_exactly_the_values_that_end_in_a_backslash(value):
    """Why an older Compose is refused (compose/commands.py's COMPOSE_MIN): under the old rule
    every value the writer quotes ends where it should, except one whose last character, as
    written, is an escaped backslash."""
    line = render_env({"V": value}).rstrip("\n")
    written = line.split("=", 1)[1]
    misread = old_parser_reads(line) != written[1:-1] if written.startswith('"') else False
    assert misread == written.endswith('\\\\"'), (value, line)
