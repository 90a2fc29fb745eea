"""A build secret (a private package registry's token) reaches one RUN step through BuildKit,
and nothing else: not the image's layers or history, not the command the tool runs or prints.
Built by the tool's own build command on this machine's engine, from a real commit."""
import io
import subprocess
import tarfile
import uuid

from staging_deploy.config.declared import Service
from staging_deploy.report import Reporter
from staging_deploy.story.images import build
from staging_deploy.transport.machines import LocalTransport
from staging_deploy.transport.runner import Runner
from tests.integration.conftest import make_commit

DOCKERFILE = """FROM debian:bookworm-slim AS deps
RUN --mount=type=secret,id=NPM_TOKEN \\
    test -s /run/secrets/NPM_TOKEN && wc -c < /run/secrets/NPM_TOKEN > /token-length
FROM deps AS runtime
ARG API_URL
RUN echo "$API_URL" > /api-url
"""


def test_a_build_secret_reaches_its_step_and_no_layer(settings):
    token = "npm-" + uuid.uuid4().hex
    sha = make_commit({"docker/Dockerfile.web": DOCKERFILE}, message="a build with a secret")
    web = Service("web", ".", "docker/Dockerfile.web", (("API_URL", "/api"),), "runtime",
                  ("NPM_TOKEN",))
    from dataclasses import replace
    settings = replace(settings, build_secrets={"NPM_TOKEN": token})
    command = build(settings, web, sha)
    printed = io.StringIO()
    Runner(LocalTransport(), "local", Reporter(stream=printed).say, timeout=600).run(
        command, "build with a secret")
    ref = settings.image_ref("web", sha)
    assert token not in command.render() and token not in printed.getvalue()
    run = subprocess.run(["docker", "run", "--rm", "--entrypoint", "cat", ref, "/token-length",
                          "/api-url"], capture_output=True, text=True, check=True)
    assert run.stdout.split() == [str(len(token)), "/api"]   # the step read it; the arg is baked
    history = subprocess.run(["docker", "history", "--no-trunc", ref], capture_output=True,
                             text=True, check=True).stdout
    assert token not in history
    saved = subprocess.run(["docker", "save", ref], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(saved)) as image:
        for member in image.getmembers():
            if member.isfile():
                assert token.encode() not in image.extractfile(member).read(), member.name
    subprocess.run(["docker", "image", "rm", "-f", ref, settings.image_repo("web") + ":staging-latest"],
                   capture_output=True)
