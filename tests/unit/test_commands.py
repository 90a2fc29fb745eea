"""Command builders are pure: compare the produced command text."""
import fcntl
import json
import os
import shlex
import subprocess

from staging_deploy.compose.commands import (
    ComposeCommands,
    health_on_host,
    parse_http,
    parse_inspect,
    strip_terminal_codes,
)
from staging_deploy.config.envfile import render_env
from staging_deploy.story import images
from staging_deploy.transport.commands import chain, cmd, pipe

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_build_uses_the_commit_tree_not_the_working_tree(settings):
    backend = [s for s in settings.services if s.name == "backend"][0]
    text = images.build(settings, backend, SHA).render()
    assert text.startswith(f"set -o pipefail; git archive --format=tar {SHA}:app/backend | docker build")
    assert f"-t ghcr.io/acme/classroom-manager-backend:staging-{SHA}" in text
    assert "-t ghcr.io/acme/classroom-manager-backend:staging-latest" in text
    assert "--label deploy.project=classroom-manager" in text
    assert f"--label org.opencontainers.image.revision={SHA}" in text
    assert "--platform linux/amd64" in text           # BUILD_PLATFORM: the server's, not ours
    assert text.endswith("-f Dockerfile -")


def test_an_image_for_another_platform_is_named_in_one_line():
    refs = {"frontend": "r/f:staging-1", "backend": "r/b:staging-1"}
    assert images.foreign("linux/amd64\nlinux/amd64\n", refs, "linux/amd64") is None
    assert images.foreign("linux/amd64\nlinux/arm64\n", refs, "linux/amd64") == (
        "backend (r/b:staging-1) is built for linux/arm64, not linux/amd64")
    assert images.foreign("linux/arm64\n", {"backend": "b"}, "linux/arm64/v8") is None


def test_registry_login_keeps_the_password_off_the_command_line():
    command = images.login("ghcr.io", "bot", "tok'en $(rm -rf)")
    assert "tok" not in command.render()
    assert "--password-stdin" in command.argv
    assert command.stdin == "tok'en $(rm -rf)"


def test_arguments_are_shell_quoted():
    command = cmd("echo", "a b", "$(x)", "it's")
    assert shlex.split(command.render()) == ["echo", "a b", "$(x)", "it's"]
    assert pipe(cmd("a"), cmd("b", "c d")).render() == "set -o pipefail; a | b 'c d'"


def test_manifest_check_uses_plain_http_only_when_configured():
    assert "--insecure" in images.exists_in_registry("localhost:5000/x/y:t", plain_http=True).argv
    assert "--insecure" not in images.exists_in_registry("localhost:5000/x/y:t").argv


def test_compose_commands_name_project_file_and_env_absolutely(settings):
    compose = ComposeCommands(settings)
    prefix = ("docker compose -p classroom-manager -f /opt/classroom-manager/compose.yaml "
              "--env-file /opt/classroom-manager/.env "
              "--env-file /opt/classroom-manager/secrets.env")
    assert compose.pull().render() == prefix + " pull --quiet"
    assert compose.up_stable().render() == prefix + " up -d --wait edge postgres redis"
    # never a signal from the engine: Docker 20.10 would not restart the edge after a reboot
    assert compose.reload_edge().render() == (
        "docker exec classroom-manager-edge-1 sh -c 'nginx -t -q -c /etc/nginx/deploy/nginx.conf"
        " && nginx -s reload -c /etc/nginx/deploy/nginx.conf'")
    assert compose.prepare_dir().render() == "install -d -m 0700 -- /opt/classroom-manager"
    assert "http://127.0.0.1:80/api/health" in health_on_host(settings).argv


def test_a_slot_is_its_own_project_with_the_release_files(settings):
    slot = ComposeCommands(settings, "/opt/classroom-manager/releases/abc", "green")
    prefix = ("env DEPLOY_SLOT=green docker compose -p classroom-manager-green "
              "-f /opt/classroom-manager/releases/abc/app.yaml "
              "--env-file /opt/classroom-manager/releases/abc/.env "
              "--env-file /opt/classroom-manager/secrets.env")
    assert slot.up().render() == prefix + " up -d --remove-orphans"
    assert slot.up(pull_never=True).render() == prefix + " up -d --remove-orphans --pull never"
    one_off = " run --rm -T --no-deps --label deploy.migration=classroom-manager backend"
    assert slot.migrate().render() == prefix + one_off + " migrate"
    # checked through the edge's loopback-only candidate port, never the public one
    probe = health_on_host(settings, "green").argv
    assert "http://127.0.0.1:8099/api/health" in probe and "X-Deploy-Slot: green" in probe


def test_slots_alternate():
    from staging_deploy.compose.commands import other_slot
    assert other_slot(None) == "blue" and other_slot("blue") == "green"
    assert other_slot("green") == "blue"


def test_only_our_projects_containers_are_picked():
    from staging_deploy.compose.commands import ours
    listing = ("a1 classroom-manager\nb2 classroom-manager-blue\nc3 other-project\n"
               "d4 classroom-manager-green\ne5 classroom-manager-blue-x\n")
    assert ours(listing, ["classroom-manager", "classroom-manager-blue",
                          "classroom-manager-green"]) == ["a1", "b2", "d4"]


def test_nothing_in_compose_commands_prunes(settings):
    for compose in (ComposeCommands(settings), ComposeCommands(settings, "/d", "blue")):
        for command in (compose.pull(), compose.up(), compose.migrate(), compose.up_stable()):
            assert "prune" not in command.render()


def test_parse_inspect_reads_service_state_health_restarts_and_sha():
    item = {"Id": "abc", "Image": "sha256:1", "RestartCount": 2,
            "State": {"Status": "running", "Health": {"Status": "healthy"}, "ExitCode": 0},
            "Config": {"Image": "r/x:staging-s", "Labels": {
                "com.docker.compose.service": "backend",
                "org.opencontainers.image.revision": "5" * 40}}}
    oneoff = {"Id": "def", "State": {"Status": "exited"},
              "Config": {"Labels": {"com.docker.compose.oneoff": "True"}}}
    rows = parse_inspect(json.dumps([item, oneoff]))
    assert rows == [{"Id": "abc", "Service": "backend", "Project": "", "State": "running",
                     "Health": "healthy",
                     "ExitCode": 0, "RestartCount": 2, "Image": "sha256:1",
                     "ImageRef": "r/x:staging-s", "Revision": "5" * 40, "Files": ""}]


def test_parse_http_splits_headers_body_and_status():
    answer = ('HTTP/1.1 200 OK\r\nServer: nginx\r\nX-Deploy-Slot: green\r\n\r\n'
              '{"ok":1}\n200')
    assert parse_http(answer) == (200, '{"ok":1}', {"server": "nginx", "x-deploy-slot": "green"})
    assert parse_http('{"ok":1}\n200') == (200, '{"ok":1}', {})
    assert parse_http("curl: (7) refused\n000") == (None, "curl: (7) refused", {})


def test_terminal_codes_are_stripped_from_logs():
    assert strip_terminal_codes("\x1b[2Kbackend | hi\x1b[0m") == "backend | hi"


def test_env_file_values_are_literal():
    assert render_env({"B": "x$y", "A": "1"}) == "A='1'\nB='x$y'\n"


def test_digest_is_picked_for_the_right_repository():
    output = '["other/repo@sha256:aaa","ghcr.io/acme/x-backend@sha256:bbb"]'
    assert images.digest_from_inspect(output, "ghcr.io/acme/x-backend") == "sha256:bbb"
    assert images.digest_from_inspect("not json", "x") is None


def test_the_new_release_is_asked_about_migrations_before_the_dump(settings):
    slot = ComposeCommands(settings, "/opt/classroom-manager/releases/abc", "blue")
    assert slot.migrate_check().render().endswith(
        " run --rm -T --no-deps --label deploy.migration=classroom-manager backend migrate-check")


def test_a_chain_is_one_call_that_stops_at_the_first_failure():
    tags = chain(images.tag("sha256:1", "r/a:rollback"), images.tag("sha256:1", "r/a:release-x"),
                 images.tag("i d", "r/b:rollback"))
    assert tags.render() == ("docker tag sha256:1 r/a:rollback && docker tag sha256:1 r/a:release-x"
                             " && docker tag 'i d' r/b:rollback")
    assert chain(cmd("true")).render() == "true"


def test_builds_from_one_machine_take_turns(tmp_path):
    """Two BuildKit builds exporting inline cache at once can kill Debian 12's engine: while
    one build holds the turn, another cannot take it; once it ends, the next can."""
    lock = str(tmp_path / "build.lock")

    def free():
        fd = os.open(lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    with images.one_build_at_a_time(lock):
        assert not free()
    assert free()
    assert images.BUILD_LOCK.endswith("staging-deploy-build.lock")


def test_the_digests_of_all_images_come_from_one_inspect():
    assert images.repo_digests("r/a:1", "r/b:1").argv[-2:] == ("r/a:1", "r/b:1")


def test_the_stable_digest_follows_the_file_and_the_values_it_reads(settings):
    from dataclasses import replace

    from staging_deploy.compose.commands import stable_digest
    text = "services:\n  db:\n    image: ${POSTGRES_IMAGE}\n    environment: {P: '${DB_PASSWORD}'}\n"
    digest = stable_digest(settings, text)
    assert digest and digest == stable_digest(settings, text)
    assert stable_digest(settings, text + "# changed\n") != digest
    other = replace(settings, values=dict(settings.values, DB_PASSWORD="another-password"))
    assert stable_digest(other, text) != digest
    unread = replace(settings, values=dict(settings.values, STAGING_URL="https://other.example"))
    assert stable_digest(unread, text) == digest        # a value the file does not read
    assert stable_digest(settings, text + "    x: ${RELEASE_SHA}\n") is None
    assert stable_digest(settings, text + "    x: ${BACKEND_IMAGE}\n") is None


class PullingHost:
    """A runner whose pulls answer from `answers` in turn (exit code, stderr)."""

    def __init__(self, *answers):
        from staging_deploy.transport.commands import Result
        self.answers = [Result(code, "", err) for code, err in answers]
        self.pulls, self.slept = 0, []

    def run(self, command, what="", check=True):
        self.pulls += 1
        return self.answers.pop(0)

    def sleep(self, seconds):
        self.slept.append(seconds)


def test_a_pull_asks_again_after_a_momentary_registry_error_and_fails_at_once_on_others():
    import io

    import pytest

    from staging_deploy.errors import RemoteCommandError
    from staging_deploy.report import Reporter
    five_hundred = "Error response from daemon: received unexpected HTTP status: 500 Internal " \
                   "Server Error"
    out = io.StringIO()
    host = PullingHost((1, five_hundred), (0, ""))
    images.pull_patiently(host, cmd("docker", "pull", "x"), "pull", Reporter(stream=out))
    assert (host.pulls, host.slept) == (2, [1.0])
    assert "the registry answered 'unexpected HTTP status: 500 Internal Server Error'; " \
           "pulling again in 1s" in out.getvalue()

    host = PullingHost((1, five_hundred), (1, five_hundred), (1, five_hundred))
    with pytest.raises(RemoteCommandError, match="pull failed:\n.*500 Internal"):
        images.pull_patiently(host, cmd("docker", "pull", "x"), "pull", Reporter(stream=out))
    assert (host.pulls, host.slept) == (3, [1.0, 3.0])

    for lasting in ("dial tcp 127.0.0.1:5000: connect: connection refused",
                    "unauthorized: authentication required", "manifest unknown"):
        host = PullingHost((1, lasting))
        with pytest.raises(RemoteCommandError, match=lasting):
            images.pull_patiently(host, cmd("docker", "pull", "x"), "pull", Reporter(stream=out))
        assert (host.pulls, host.slept) == (1, [])


def test_a_file_a_command_writes_is_our_users_only_and_whole_or_not_at_all(tmp_path):
    """A dump holds the whole database: written with umask 077 whatever the session's umask,
    under a temporary name renamed once the command succeeded; a failed one (a full disk, a
    pg_dump error) leaves no file, so nothing that looks like a backup."""
    from dataclasses import replace

    from staging_deploy.transport.commands import cmd, to_file
    piped = to_file(replace(cmd("gzip"), upstream=cmd("pg_dump", "db")), "/d/backups/x.dump")
    assert piped.render() == (
        "umask 077; { set -o pipefail; pg_dump db | gzip > /d/backups/x.dump.partial && "
        "mv -f -- /d/backups/x.dump.partial /d/backups/x.dump; } || "
        "{ rm -f -- /d/backups/x.dump.partial; false; }")
    for ok, writer in ((True, "printf whole"), (False, "printf half; exit 28")):
        path = tmp_path / f"{ok}.dump"
        done = subprocess.run(["bash", "-c", to_file(cmd("sh", "-c", writer), str(path))
                               .render() + " && echo next"], capture_output=True, text=True)
        assert (done.returncode == 0) is ok and ("next" in done.stdout) is ok
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(str(ok))) == (
            [f"{ok}.dump"] if ok else [])
        assert not ok or path.read_text() == "whole" and oct(path.stat().st_mode)[-3:] == "600"


def test_every_container_the_deploy_starts_has_bounded_logs(settings):
    """Docker's json-file logs grow until the disk is full unless bounded: every service of the
    compose and stack files, and every container the Swarm target starts by hand (one-offs,
    the dump, the jobs on every node), rotates at LOG_MAX_SIZE and keeps LOG_MAX_FILE files."""
    import yaml

    from staging_deploy.swarm import stacks
    from tests.conftest import ROOT
    for path in ("fabfile/files/compose.yaml", "compose/app.yaml", "fabfile/files/stack.yaml",
                 "compose/stack-app.yaml"):
        services = yaml.safe_load((ROOT / path).read_text())["services"]
        for service, spec in services.items():
            assert spec.get("logging") == {"driver": "json-file", "options": {
                "max-size": "${LOG_MAX_SIZE:-10m}", "max-file": "${LOG_MAX_FILE:-3}"}}, \
                (path, service)
    assert {"LOG_MAX_SIZE": "10m", "LOG_MAX_FILE": "3"}.items() <= settings.app_env("x").items()
    bounded = "--log-driver json-file --log-opt max-size=10m --log-opt max-file=3"
    for command in (stacks.one_off(settings, "/d", "BACKEND_IMAGE", ["migrate"], [], "net"),
                    stacks.dump_database(settings, "/d", "/d/x.dump"),
                    stacks.prefetch_job(settings, "pull", "img@sha256:" + "a" * 64)):
        assert bounded in command.render(), command.render()


def test_the_hosts_compose_is_refused_when_absent_or_older_than_the_env_writer_targets():
    from staging_deploy.compose.commands import compose_too_old
    from staging_deploy.transport.commands import Result
    assert compose_too_old(Result(0, "2.20.0\n", "")) is None
    assert compose_too_old(Result(0, "v2.26.1\n", "")) is None
    assert compose_too_old(Result(0, "2.26.1-4\n", "")) is None        # Debian's package
    assert compose_too_old(Result(0, "dev\n", "")) is None             # a build it cannot read
    assert compose_too_old(Result(0, "v2.19.1\n", "")).startswith(
        "Docker Compose 2.19.1 on the host is older than 2.20.0")
    assert "not installed" in compose_too_old(Result(1, "", "docker: 'compose' is not a docker "
                                                            "command"))
