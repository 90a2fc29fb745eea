"""The instance's containers: its registry, its SSH staging host (and a bare one for
`staging.setup`), its credentials and env file; taking them down."""
import secrets
import shutil
import socket
import subprocess

import requests

from staging_deploy.errors import DeployError

from .images import shared_work, stand_in_ref
from .names import (
    BARE_HOST,
    BARE_SSH_PORT,
    BASELINE_HTTP_PORT,
    DIND_FLAGS,
    ENV_FILE,
    HERE,
    HOST,
    HTTP_PORT,
    HTTPS_PORT,
    INSTANCE,
    INSTANCE_LABEL,
    LABEL,
    LAYOUT,
    NETWORK,
    REGISTRY,
    REGISTRY_PORT,
    ROOT,
    SSH_PORT,
    STAND_INS,
    STATE,
    SUBNET,
    SWARM_NODES,
    VOLUMES,
)
from .run import container_running, log, ok, sh, wait_for, write_atomically


def ensure_secrets() -> dict:
    """Credentials made once per testbed and kept in testbed/.state (mode 0700)."""
    STATE.mkdir(mode=0o700, exist_ok=True)
    path = STATE / "secrets.env"
    names = ["TESTBED_ID", "REGISTRY_PASSWORD", "REGISTRY_PULL_PASSWORD", "DB_PASSWORD", "JWT_SECRET"]
    creds = {}
    if path.exists():
        creds = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    if set(names) - set(creds):
        creds = {name: secrets.token_urlsafe(24) for name in names}
        path.write_text("".join(f"{k}={v}\n" for k, v in creds.items()))
        path.chmod(0o600)
        for stale in ("htpasswd", "deploy_key", "deploy_key.pub"):
            (STATE / stale).unlink(missing_ok=True)
    if not (STATE / "htpasswd").exists():
        lines = [sh("docker", "run", "--rm", "-i", "cm-testbed/registry", "htpasswd", "-niB", user,
                    stdin=creds[key]).strip()
                 for user, key in (("pusher", "REGISTRY_PASSWORD"), ("puller", "REGISTRY_PULL_PASSWORD"))]
        (STATE / "htpasswd").write_text("\n".join(lines) + "\n")
    if not (STATE / "deploy_key").exists():
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "testbed-deploy", "-f",
           STATE / "deploy_key")
    return creds

def replace_foreign_testbed(testbed_id):
    """Containers left by another checkout (or older keys) hold other credentials: remove them."""
    for name in (REGISTRY, HOST):
        out = subprocess.run(["docker", "inspect", "--format", '{{index .Config.Labels "cm-testbed.id"}}',
                              name], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip() != f"{testbed_id}-{LAYOUT}":
            log("found a testbed made with other credentials; replacing it")
            remove_resources()
            return

def ensure_network():
    if not ok("docker", "network", "inspect", NETWORK):
        sh("docker", "network", "create", "--label", LABEL, "--label", INSTANCE_LABEL,
           "--subnet", SUBNET, NETWORK)

def ensure_container(name, run_args, testbed_id):
    if container_running(name):
        return
    if ok("docker", "inspect", name):
        sh("docker", "start", name)
        return
    sh("docker", "run", "-d", "--name", name, "--label", LABEL, "--label", INSTANCE_LABEL,
       "--label", f"cm-testbed.id={testbed_id}-{LAYOUT}",
       "--network", NETWORK, "-e", f"REGISTRY_PORT={REGISTRY_PORT}", *run_args)

def ensure_volume(name):
    if not ok("docker", "volume", "inspect", name):
        sh("docker", "volume", "create", "--label", LABEL, "--label", INSTANCE_LABEL, name)

def registry_answers() -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{REGISTRY_PORT}/v2/", timeout=1).status_code == 401
    except requests.RequestException:
        return False

def start_registry():
    """The registry again, after a test stopped or killed it (its data kept in its volume)."""
    sh("docker", "start", REGISTRY)
    wait_for("registry", registry_answers)

def pin_host_key():
    """The staging host's key as it is now, pinned in the env file (after a test changed it)."""
    with shared_work():
        write_env_file(ensure_secrets(), known_hosts_line())

def ensure_registry(testbed_id):
    for volume in VOLUMES:
        ensure_volume(volume)
    ensure_container(REGISTRY, [
        "--network-alias", "registry", "--restart", "unless-stopped",
        "-p", f"127.0.0.1:{REGISTRY_PORT}:5000",
        "-v", f"{VOLUMES[0]}:/var/lib/docker-registry",
        "-v", f"{STATE / 'htpasswd'}:/auth/htpasswd:ro",
        "cm-testbed/registry"], testbed_id)
    wait_for("registry", registry_answers)

def ensure_staging_host(testbed_id):
    # --init: an init that reaps orphans (dockerd as PID 1 leaves zombies behind)
    args = ["--hostname", "staging", "--init", "--restart", "unless-stopped",
            "-p", f"127.0.0.1:{SSH_PORT}:22", "-p", f"127.0.0.1:{HTTP_PORT}:80",
            "-p", f"127.0.0.1:{BASELINE_HTTP_PORT}:81", "-p", f"127.0.0.1:{HTTPS_PORT}:443",
            "-v", f"{VOLUMES[1]}:/var/lib/docker",
            "-v", f"{STATE / 'deploy_key.pub'}:/home/deploy/.ssh/authorized_keys:ro",
            "cm-testbed/staging-host"]
    if not container_running(HOST) and not ok("docker", "inspect", HOST):
        try:
            ensure_container(HOST, ["--privileged", *args], testbed_id)
            wait_for("staging host engine", lambda: ok("docker", "exec", HOST, "docker", "info"), 20)
        except DeployError:
            log("--privileged refused here; running the staging host with explicit capabilities")
            sh("docker", "rm", "-f", HOST, check=False)
            ensure_container(HOST, [*DIND_FLAGS, *args], testbed_id)
    else:
        ensure_container(HOST, args, testbed_id)
    wait_for("staging host engine", lambda: ok("docker", "exec", HOST, "docker", "info"), 60)
    wait_for("staging host sshd", ssh_banner, 30)

def ssh_banner(port=SSH_PORT) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            return conn.recv(4).startswith(b"SSH-")
    except OSError:
        return False

def known_hosts_line(container=HOST, port=SSH_PORT) -> str:
    """The host's own public key, read from inside it (not from the network), as known_hosts."""
    key = sh("docker", "exec", container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()
    return f"[127.0.0.1]:{port} {key[0]} {key[1]}"

def start_bare_host() -> dict:
    """A fresh server for `staging.setup` tests: sshd, sudo, user `admin`, no Docker. Returns
    the settings that reach it (admin key path, host key pin)."""
    sh("docker", "build", "--quiet", "--label", LABEL, "-t", "cm-testbed/bare-host",
       HERE / "images" / "bare-host")
    key = STATE / "admin_key"
    if not key.exists():
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "testbed-admin", "-f", key)
    sh("docker", "rm", "-f", BARE_HOST, check=False)
    sh("docker", "run", "-d", "--name", BARE_HOST, "--label", LABEL, "--label", INSTANCE_LABEL,
       "--network", NETWORK, "-e", f"REGISTRY_PORT={REGISTRY_PORT}",
       "--init", "-p", f"127.0.0.1:{BARE_SSH_PORT}:22",
       "-v", f"{key}.pub:/home/admin/.ssh/authorized_keys:ro", *DIND_FLAGS, "cm-testbed/bare-host")
    wait_for("bare host sshd", lambda: ssh_banner(BARE_SSH_PORT), 30)
    return {"STAGING_PORT": str(BARE_SSH_PORT), "SETUP_USER": "admin", "SETUP_SSH_KEY": str(key),
            "STAGING_KNOWN_HOSTS": known_hosts_line(BARE_HOST, BARE_SSH_PORT)}

def remove_bare_host():
    sh("docker", "rm", "-f", "-v", BARE_HOST, check=False)

def write_env_file(creds, known_hosts):
    values = {
        "STAGING_HOST": "127.0.0.1",
        "STAGING_PORT": str(SSH_PORT),
        "STAGING_USER": "deploy",
        "STAGING_SSH_KEY": str(STATE / "deploy_key"),
        "STAGING_KNOWN_HOSTS": known_hosts,
        "STAGING_URL": f"http://127.0.0.1:{HTTP_PORT}",
        "REGISTRY": f"localhost:{REGISTRY_PORT}",
        "REGISTRY_PLAIN_HTTP": "true",
        "IMAGE_NAME": "testbed/classroom-manager",
        "REGISTRY_USER": "pusher",
        "REGISTRY_PASSWORD": creds["REGISTRY_PASSWORD"],
        "REGISTRY_PULL_USER": "puller",
        "REGISTRY_PULL_PASSWORD": creds["REGISTRY_PULL_PASSWORD"],
        "DB_PASSWORD": creds["DB_PASSWORD"],
        "JWT_SECRET": creds["JWT_SECRET"],
        "POSTGRES_IMAGE": stand_in_ref(STAND_INS["postgres"]),
        "REDIS_IMAGE": stand_in_ref(STAND_INS["redis"]),
        "EDGE_IMAGE": stand_in_ref(STAND_INS["edge"]),
        "DOCKER_CLI_IMAGE": stand_in_ref(STAND_INS["docker-cli"]),
    }
    text = "# Written by `inv testbed.up`: the local testbed's settings. Do not commit.\n"
    text += "".join(f"{k}='{v}'\n" for k, v in values.items())
    write_atomically(ENV_FILE, text)

def down(remove_images=False):
    """Remove every container, network and volume of this instance, and its env files; the
    keys too once no other instance runs."""
    remove_resources()
    ENV_FILE.unlink(missing_ok=True)
    ENV_FILE.with_name(ENV_FILE.name + "-swarm").unlink(missing_ok=True)
    if INSTANCE:
        shutil.rmtree(STATE / f"docker-{INSTANCE}", ignore_errors=True)
    if not sh("docker", "ps", "-aq", "--filter", f"label={LABEL}").split():
        shutil.rmtree(STATE, ignore_errors=True)
    if remove_images:
        images = sh("docker", "images", "-q", "--filter", f"label={LABEL}").split()
        if images:
            sh("docker", "rmi", "-f", *set(images), check=False)
    log(f"down: instance {INSTANCE}'s containers, network, volumes and {ENV_FILE.name} removed")

def down_all():
    """Every instance's containers, networks and volumes (all labelled as a testbed's), their
    env files and the keys: what `.ci/run` leaves behind, nothing."""
    containers = sh("docker", "ps", "-aq", "--filter", f"label={LABEL}").split()
    if containers:
        sh("docker", "rm", "-f", "-v", *containers)
    for volume in sh("docker", "volume", "ls", "-q", "--filter", f"label={LABEL}").split():
        sh("docker", "volume", "rm", volume)
    for network in sh("docker", "network", "ls", "-q", "--filter", f"label={LABEL}").split():
        sh("docker", "network", "rm", network)
    for env_file in ROOT.glob(".env.testbed*"):
        env_file.unlink()
    shutil.rmtree(STATE, ignore_errors=True)
    log("down: every testbed instance removed")

def remove_resources():
    """Containers, volumes and the network of this instance (labelled so, or, from a testbed of
    before instances, named so), nothing else."""
    names = [REGISTRY, HOST, BARE_HOST, *SWARM_NODES]
    containers = set(sh("docker", "ps", "-aq", "--no-trunc", "--filter",
                        f"label={INSTANCE_LABEL}").split())
    for name in names:
        found = subprocess.run(["docker", "inspect", "--type", "container", "--format", "{{.Id}}",
                                name], capture_output=True, text=True)
        containers |= {found.stdout.strip()} if found.returncode == 0 else set()
    if containers:
        sh("docker", "rm", "-f", "-v", *sorted(containers))
    volumes = sh("docker", "volume", "ls", "-q", "--filter", f"label={INSTANCE_LABEL}").split()
    volumes += [v for v in (*VOLUMES, *(f"{n}-docker" for n in SWARM_NODES))
                if v not in volumes and ok("docker", "volume", "inspect", v)]
    for volume in volumes:
        sh("docker", "volume", "rm", volume)
    if ok("docker", "network", "inspect", NETWORK):
        sh("docker", "network", "rm", NETWORK)
