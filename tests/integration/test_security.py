"""SSH pinning, secrets that never leak, notifications: against the real testbed."""
import hashlib
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from dotenv import dotenv_values

import testbed
from tests.conftest import ENV_VALUES, ROOT
from tests.integration.conftest import GOOD, deploy, health, inv, release, staging_host


class Receiver(BaseHTTPRequestHandler):
    """A webhook endpoint on 127.0.0.1 that records what it is sent (after `delay` seconds)."""
    received = []
    delay = 0.0

    def do_POST(self):
        time.sleep(Receiver.delay)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Receiver.received.append((self.path, json.loads(body)))
        try:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the deploy stopped waiting for a slow webhook: what the slow-webhook test wants

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    Receiver.received, Receiver.delay = [], 0.0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/T000/B000/canary-{uuid.uuid4().hex}"
    server.shutdown()


class ProcessWatcher:
    """Samples every command line on the staging host and on this machine while a deploy runs."""

    def __init__(self):
        self.seen, self.running = set(), True
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self):
        while self.running:
            for argv in (["docker", "exec", testbed.HOST, "ps", "-eww", "-o", "args="],
                         ["ps", "-eww", "-o", "args="]):
                out = subprocess.run(argv, capture_output=True, text=True).stdout
                self.seen.update(out.splitlines())
            time.sleep(0.1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


def test_no_secret_reaches_output_command_lines_host_files_or_images(testbed_env, webhook):
    canary = {"JWT_SECRET": f"jwt-canary-{uuid.uuid4().hex}", "STAGING_WEBHOOK_URL": webhook}
    secrets = dict(canary)
    file_values = dotenv_values(testbed.ENV_FILE)
    for name in ("REGISTRY_PASSWORD", "REGISTRY_PULL_PASSWORD", "DB_PASSWORD"):
        secrets[name] = file_values[name]
    secrets["STAGING_SSH_KEY"] = (testbed.STATE / "deploy_key").read_text().splitlines()[1]

    good, bad = release("secret-good"), release("secret-bad", fault="health-500")
    with ProcessWatcher() as watcher:
        ok = deploy(testbed_env, good, **canary)
        failed = deploy(testbed_env, bad, HEALTH_TIMEOUT="6", **canary)
    assert ok.returncode == 0, ok.output
    assert failed.returncode == 1 and "kept serving" in failed.output
    assert len(watcher.seen) > 20  # the watcher really saw the deploys' processes

    host_files = staging_host("sh", "-c", "cat /opt/classroom-manager/ledger.jsonl "
                              "/opt/classroom-manager/deploy.lock.json 2>/dev/null; true")
    images = ""
    for service in ("backend", "frontend"):
        ref = f"localhost:{testbed.REGISTRY_PORT}/testbed/classroom-manager-{service}:staging-{good}"
        images += subprocess.run(["docker", "image", "inspect", ref], capture_output=True, text=True).stdout
        images += subprocess.run(["docker", "history", "--no-trunc", ref], capture_output=True,
                                 text=True).stdout
    tracked = subprocess.run(["git", "grep", "-I", "-l", "-e", secrets["DB_PASSWORD"], "-e",
                              secrets["REGISTRY_PASSWORD"], "HEAD"], cwd=ROOT,
                             capture_output=True, text=True).stdout
    places = {"deploy output": ok.output + failed.output,
              "command lines (host and local)": "\n".join(watcher.seen),
              "ledger and lock note on the host": host_files,
              "images": images, "repository": tracked}
    for where, text in places.items():
        for name, value in secrets.items():
            assert value not in text, f"{name} leaked into {where}"
    # and the .env that carries them is private to the deploy user
    mode = staging_host("stat", "-c", "%a %U", f"/opt/classroom-manager/releases/{good}/.env")
    assert mode.split() == ["600", "deploy"]
    assert staging_host("stat", "-c", "%a", "/opt/classroom-manager").strip() == "700"


def test_webhook_hears_success_and_failure(testbed_env, webhook):
    good, bad = release("hook-good"), release("hook-bad", fault="crash")
    assert deploy(testbed_env, good, STAGING_WEBHOOK_URL=webhook).returncode == 0
    assert deploy(testbed_env, bad, STAGING_WEBHOOK_URL=webhook).returncode == 1
    results = [(body["attachments"][0]["fields"][0]["value"], body["attachments"][0]["fields"][1]["value"])
               for _, body in Receiver.received]
    assert results == [(good, "succeeded"), (bad, "failed")]
    failure = Receiver.received[1][1]
    assert re.search("rolled back to|kept serving", failure["text"])
    assert {f["title"] for f in failure["attachments"][0]["fields"]} >= {"sha", "result", "duration",
                                                                         "url", "cause"}


def test_a_slow_webhook_does_not_hold_up_or_fail_the_deploy(testbed_env, webhook):
    Receiver.delay = 30
    result = deploy(testbed_env, release("hook-slow"), STAGING_WEBHOOK_URL=webhook)
    assert result.returncode == 0, result.output
    assert "warning: the webhook notification failed (ReadTimeout)" in result.stdout
    assert health()[1] in result.stdout


def test_changed_host_key_is_refused_before_any_remote_command(testbed_env):
    staging_host("sh", "-c", "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null && "
                 "kill -HUP $(cat /run/sshd.pid)", user="root")
    try:
        result = deploy(testbed_env, release("rekeyed"))
        assert result.returncode == 1
        assert "does NOT match STAGING_KNOWN_HOSTS" in result.stderr
        assert f"ssh-keyscan -p {testbed.SSH_PORT} 127.0.0.1" in result.stderr
        assert "--> take the deploy lock" not in result.stdout
    finally:
        testbed.pin_host_key()   # the new key, in the env file
    status = inv(testbed_env, "deploy.status")       # connects with the new pin
    assert "NOT match" not in status.output and "running" in status.stdout, status.output


def test_a_variable_declared_in_invoke_yaml_reaches_the_backend_and_a_secret_one_stays_hidden(
        testbed_env, tmp_path):
    """The app's environment is configuration: a runtime invoke config (`inv -f`) and a copy of
    the compose folder declare two variables the tool has never heard of."""
    compose = tmp_path / "compose"
    shutil.copytree(ROOT / "compose", compose)
    app = (compose / "app.yaml").read_text()
    anchor = "      LOG_LEVEL: ${LOG_LEVEL:-info}\n"
    assert anchor in app
    (compose / "app.yaml").write_text(app.replace(anchor, anchor + (
        "      ERROR_TRACKER_DSN: ${ERROR_TRACKER_DSN}\n"
        "      MAIL_PASSWORD: ${MAIL_PASSWORD:?MAIL_PASSWORD is required}\n")))
    runtime = tmp_path / "runtime.yaml"
    runtime.write_text(yaml.safe_dump({"deploy": {
        "compose_dir": str(compose),
        "app_env": {"clear": {"ERROR_TRACKER_DSN": "https://key@o1.example/7"},
                    "secret": ["JWT_SECRET", "MAIL_PASSWORD"]}}}))
    # What a random password can hold, the .env's quoting and interpolation characters among them
    secret = f"mail-canary-{uuid.uuid4().hex} it's \"$HOME\" ${{X}} #x\\"
    env = dict(testbed_env, MAIL_PASSWORD=secret)

    def inv_with(*args):
        return subprocess.run([sys.executable, "-m", "invoke", "-f", str(runtime), *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=600)

    sha = release("app-env")
    GOOD.discard(sha)   # its compose files need MAIL_PASSWORD: no later test may start from it
    deployed = inv_with("deploy.staging", "--sha", sha)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    check = ("import hashlib, os; print('dsn=' + os.environ['ERROR_TRACKER_DSN']); "
             "print('mail=' + hashlib.sha256(os.environ['MAIL_PASSWORD'].encode()).hexdigest())")
    seen = inv_with("deploy.exec", "backend", "--", "python3", "-c", check)
    assert seen.returncode == 0, seen.stdout + seen.stderr
    assert "dsn=https://key@o1.example/7" in seen.stdout
    assert f"mail={hashlib.sha256(secret.encode()).hexdigest()}" in seen.stdout
    everything = deployed.stdout + deployed.stderr + seen.stdout + seen.stderr
    assert secret not in everything


def test_the_hosts_env_file_reads_back_exactly_through_compose(testbed_env, tmp_path):
    """render_env against Compose's own parser (compose-go), on the staging host."""
    from staging_deploy.config.envfile import render_env
    env = {f"V{i}": value for i, value in enumerate(ENV_VALUES)}
    compose = "services:\n  s:\n    image: x\n    environment:\n" + \
        "".join(f"      {name}: ${{{name}}}\n" for name in env)
    folder = f"/tmp/envfile-{uuid.uuid4().hex}"
    staging_host("mkdir", folder)
    for name, text in (("t.env", render_env(env)), ("c.yaml", compose)):
        staging_host("tee", f"{folder}/{name}", input=text)
    printed = staging_host("docker", "compose", "--env-file", f"{folder}/t.env", "-f",
                           f"{folder}/c.yaml", "config", "--format", "json")
    staging_host("rm", "-r", folder)
    seen = json.loads(printed)["services"]["s"]["environment"]
    # `compose config` prints a `$` as `$$` (its output is a compose file again)
    assert {name: value.replace("$$", "$") for name, value in seen.items()} == env
