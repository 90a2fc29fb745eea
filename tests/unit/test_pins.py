"""Infrastructure images by digest (pins.py) against a scripted host."""
import io
import json

import pytest

from staging_deploy.errors import DeployError
from staging_deploy.report import Reporter
from staging_deploy.story import pins
from staging_deploy.transport.commands import Result
from staging_deploy.transport.machines import Plan, Recorder, Script
from staging_deploy.transport.runner import Runner

DIGEST = "sha256:" + "ab" * 32


class Registry(Script):
    """A host whose registry serves every image at DIGEST, but `local/*` (built on the host:
    no registry digest); image-pins.json holds `recorded`."""

    def __init__(self, recorded=""):
        self.recorded, self.written, self.pulled = recorded, None, []

    def answer(self, command):
        argv = command.argv
        if argv[:2] == ("cat", "--"):
            return Result(0 if self.recorded else 1, self.recorded, "")
        if argv[:2] == ("docker", "pull"):
            self.pulled.append(argv[-1])
        if argv[:3] == ("docker", "image", "inspect"):
            ref = argv[-1]
            found = [] if ref.startswith("local/") else [f"{pins.repository(ref)}@{DIGEST}"]
            return Result(0, json.dumps(found) + "\n", "")
        return Result(0, "", "")

    def put(self, path, data):
        self.written = (path, json.loads(data))


def pinned(settings, host):
    return pins.pin_images(Runner(Recorder(Plan(), "remote", host), "remote"), settings,
                           Reporter(stream=io.StringIO()))


def with_images(settings, **images):
    from dataclasses import replace
    return replace(settings, values={**settings.values, **images})


def test_a_tag_is_resolved_on_the_host_once_recorded_and_then_run_by_that_digest(settings):
    host = Registry()
    first = pinned(settings, host)
    tags = [settings.POSTGRES_IMAGE, settings.REDIS_IMAGE, settings.EDGE_IMAGE]
    assert host.pulled == sorted(tags)
    assert [first.POSTGRES_IMAGE, first.REDIS_IMAGE, first.EDGE_IMAGE] == [
        f"{tag}@{DIGEST}" for tag in tags]
    assert first.app_env("x")["POSTGRES_IMAGE"] == f"{settings.POSTGRES_IMAGE}@{DIGEST}"
    path, recorded = host.written
    assert path == "/opt/classroom-manager/image-pins.json"
    assert recorded == {tag: f"{tag}@{DIGEST}" for tag in tags}
    # the next deploy: the recorded digest, whatever the tag names upstream by now; no pull
    again = Registry(json.dumps(dict(recorded, **{settings.EDGE_IMAGE: f"{settings.EDGE_IMAGE}"
                                                  f"@sha256:{'cd' * 32}"})))
    second = pinned(settings, again)
    assert again.pulled == [] and again.written is None
    assert second.EDGE_IMAGE == f"{settings.EDGE_IMAGE}@sha256:{'cd' * 32}"


def test_an_image_set_by_digest_is_used_as_it_is_and_a_new_tag_is_pinned_on_its_own(settings):
    by_digest = f"postgres:16-alpine@sha256:{'ef' * 32}"
    recorded = json.dumps({settings.REDIS_IMAGE: f"{settings.REDIS_IMAGE}@{DIGEST}",
                           settings.EDGE_IMAGE: f"{settings.EDGE_IMAGE}@{DIGEST}",
                           "bad": "not pinned", "postgres:15": ["no"]})
    host = Registry(recorded)
    result = pinned(with_images(settings, POSTGRES_IMAGE=by_digest), host)
    assert result.POSTGRES_IMAGE == by_digest and host.pulled == []
    host = Registry(recorded)
    result = pinned(with_images(settings, POSTGRES_IMAGE="postgres:17"), host)
    assert host.pulled == ["postgres:17"] and result.POSTGRES_IMAGE == f"postgres:17@{DIGEST}"
    assert set(host.written[1]) == {settings.REDIS_IMAGE, settings.EDGE_IMAGE, "postgres:17"}


def test_the_swarm_target_pins_the_job_image_that_mounts_the_docker_socket(defaults, environ):
    from staging_deploy.config.settings import load_settings
    from staging_deploy.swarm.stacks import node_job
    from tests.conftest import ROOT
    settings = load_settings(defaults, dict(environ, DEPLOY_TARGET="swarm"), cwd=ROOT)
    result = pinned(settings, Registry())
    assert result.DOCKER_CLI_IMAGE == f"{settings.DOCKER_CLI_IMAGE}@{DIGEST}"
    assert "DOCKER_CLI_IMAGE" not in pins.infra_images(
        with_images(settings, DEPLOY_TARGET="compose"))
    assert result.DOCKER_CLI_IMAGE in node_job(result, "p", result.DOCKER_CLI_IMAGE, "sh",
                                               docker_socket=True).argv
    with pytest.raises(DeployError, match="runs only by digest"):
        node_job(settings, "p", settings.DOCKER_CLI_IMAGE, "sh", docker_socket=True)


def test_an_image_with_no_registry_digest_fails_in_one_line(settings):
    with pytest.raises(DeployError, match="local/postgres:1 has no registry digest on the host"):
        pinned(with_images(settings, POSTGRES_IMAGE="local/postgres:1"), Registry())


@pytest.mark.parametrize("ref,repository", [
    ("postgres:16-alpine", "postgres"), ("docker.io/library/postgres:16", "postgres"),
    ("docker.io/bitnami/redis:7", "bitnami/redis"), ("nginx", "nginx"),
    ("localhost:5000/testbed/postgres:15", "localhost:5000/testbed/postgres"),
    ("localhost:5000/edge", "localhost:5000/edge"), ("ghcr.io/library/x:1", "ghcr.io/library/x")])
def test_the_repository_is_named_as_repo_digests_name_it(ref, repository):
    assert pins.repository(ref) == repository


def test_recorded_pins_that_are_not_pins_are_ignored():
    good = {"redis:7": f"redis:7@{DIGEST}"}
    assert pins.read_pins(json.dumps(dict(good, **{"a:1": "b:1@" + DIGEST, "c:1": 3}))) == good
    assert pins.read_pins("[1]") == {} and pins.read_pins("{not json") == {}
