"""Taking over a stack run by hand (compose/takeover.py): its containers told from the tool's,
the database volume's major version checked before anything changes, the team's files kept,
its app stopped (not removed) once the new release is live."""
import io

import pytest

from staging_deploy.compose import takeover
from staging_deploy.errors import DeployError
from staging_deploy.report import Reporter
from staging_deploy.transport.commands import Result

DIR = "/opt/classroom-manager"


class Host:
    """Answers by the first word that differs; records what ran."""

    def __init__(self, answers):
        self.answers, self.ran = answers, []

    def run(self, command, what="", check=True, timeout=None):
        text = command.render()
        self.ran.append(text)
        for key, result in self.answers.items():
            if key in text:
                return result
        return Result(0, "", "")


def quiet():
    return Reporter(stream=io.StringIO())


def test_the_containers_the_tool_did_not_create_are_the_teams(settings):
    rows = "\n".join([
        f"a1\tclassroom-manager-backend-1\trunning\tbackend\t{DIR}/docker-compose.yml",
        f"b2\tclassroom-manager-postgres-1\texited\tpostgres\t{DIR}/docker-compose.yml",
        f"c3\tclassroom-manager-edge-1\trunning\tedge\t{DIR}/compose.yaml",
        f"d4\tclassroom-manager-redis-1\trunning\tredis\t{DIR}/releases/{'a' * 40}/compose.yaml",
        "not a row"])
    found = takeover.foreign(rows, settings)
    assert [(f.id, f.service, f.running) for f in found] == [("a1", "backend", True),
                                                             ("b2", "postgres", False)]


@pytest.mark.parametrize("output, expected", [
    ("16\n\npostgres (PostgreSQL) 16.4\n", ("16", "16")),
    ("\n\npostgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)\n", (None, "15")),
    ("9.6\n\npostgres (PostgreSQL) 16.1\n", ("9", "16")),
    ("", (None, None)),
])
def test_the_major_versions_are_read_from_the_volume_and_the_image(output, expected):
    assert takeover.major_versions(output) == expected


def test_a_database_volume_of_another_major_version_is_refused_before_anything_changes(settings):
    host = Host({"docker volume inspect": Result(0, "16\n\npostgres (PostgreSQL) 15.8\n", "")})
    with pytest.raises(DeployError, match=r"the data volume classroom-manager_postgres_data holds "
                                          r"PostgreSQL 16; POSTGRES_IMAGE \(postgres:16-alpine\) is 15"):
        takeover.check_database(host, settings, quiet())
    assert len(host.ran) == 1      # one look, nothing else
    same = Host({"docker volume inspect": Result(0, "16\n\npostgres (PostgreSQL) 16.4\n", "")})
    assert takeover.check_database(same, settings, quiet()) == "PostgreSQL 16"
    absent = Host({"docker volume inspect": Result(3, "", "")})
    assert takeover.check_database(absent, settings, quiet()) is None
    broken = Host({"docker volume inspect": Result(125, "", "no such image")})
    with pytest.raises(DeployError, match="cannot read the PostgreSQL version"):
        takeover.check_database(broken, settings, quiet())


def test_the_teams_files_are_moved_aside_never_overwritten(settings):
    host = Host({})
    assert takeover.keep_their_files(host, settings, quiet()) == [
        ".env -> .env.before-staging-deploy", "compose.yaml -> compose.yaml.before-staging-deploy"]
    assert all("mv -- " in text and "stable.digest" in text for text in host.ran)
    none = Host({"mv --": Result(3, "", "")})
    assert takeover.keep_their_files(none, settings, quiet()) == []
    both = Host({"mv --": Result(4, "", "")})
    with pytest.raises(DeployError, match="and neither is the tool's"):
        takeover.keep_their_files(both, settings, quiet())


def test_their_app_stops_once_the_release_is_live_their_data_is_the_tools(settings):
    found = [takeover.Foreign("a1", "cm-backend-1", "backend", True),
             takeover.Foreign("a2", "cm-frontend-1", "frontend", True),
             takeover.Foreign("a3", "cm-worker-1", "worker", False),
             takeover.Foreign("b2", "cm-postgres-1", "postgres", True)]
    host = Host({})
    lines = takeover.stop_their_app(host, settings, found, quiet())
    assert host.ran == ["docker stop --time 10 a1 a2"]       # stopped, never removed
    assert "cm-backend-1, cm-frontend-1 stopped, not removed" in lines[0]
    assert "postgres now run as the tool's" in lines[1]


def test_a_database_whose_data_is_elsewhere_is_refused(settings):
    """Their PostgreSQL keeps its data in a volume the tool's would not use: the deploy stops
    before anything changes (an empty database would have replaced it)."""
    theirs = [takeover.Foreign("b2", "cm-postgres-1", "postgres", True)]
    host = Host({"docker inspect": Result(0, "pgdata\n", "")})
    with pytest.raises(DeployError, match="keeps its data in pgdata, not in the volume "
                                          "classroom-manager_postgres_data"):
        takeover.check_database(host, settings, quiet(), theirs)
    same = Host({"docker inspect": Result(0, "classroom-manager_postgres_data\n", ""),
                 "docker volume inspect": Result(0, "15\n\npostgres (PostgreSQL) 15.8\n", "")})
    assert takeover.check_database(same, settings, quiet(), theirs) == "PostgreSQL 15"


def test_a_migration_that_never_ends_is_stopped_at_migrate_timeout(settings):
    """An entrypoint that migrates then serves, run as the migration: at migrate_timeout its
    one-off container (found by its label) is removed and the deploy fails in one line."""
    from dataclasses import replace

    from staging_deploy.compose.commands import ComposeCommands
    from staging_deploy.compose.database import bounded
    from staging_deploy.errors import CommandTimedOut

    class Slow(Host):
        def run(self, command, what="", check=True, timeout=None):
            self.timeouts = getattr(self, "timeouts", []) + [timeout]
            if " run --rm " in command.render():
                self.ran.append(command.render())
                raise CommandTimedOut(what, f"timed out after {timeout:.0f}s")
            return super().run(command, what, check, timeout)

    settings = replace(settings, migrate_timeout=42.0, migrate_entrypoint="env")
    host = Slow({})
    migrate = ComposeCommands(settings, "/opt/x", "blue").migrate()
    assert " --entrypoint env backend migrate" in migrate.render()
    with pytest.raises(DeployError, match=r"^migrations still ran after 42s \(migrate_timeout\): "
                                          r"stopped\. A command that serves after migrating"):
        bounded(host, settings, migrate, "migrations")
    assert host.timeouts[0] == 42.0
    assert "label=$1" in host.ran[-1] and host.ran[-1].endswith(
        "deploy.migration=classroom-manager")   # the one-off, removed by its label


def test_port_443_is_published_only_with_https_at_the_edge(settings):
    from dataclasses import replace

    from staging_deploy.compose.commands import BASE_FILE, tool_file
    plain = tool_file(settings, BASE_FILE)
    assert ":443" not in plain and "${APP_PORT:-80}:80" in plain
    https = replace(settings, values=dict(settings.values, EDGE_TLS="acme"))
    assert '"${HTTPS_PORT:-443}:443"' in tool_file(https, BASE_FILE)
