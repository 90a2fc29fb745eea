"""The local testbed: on one machine, what a team has for real.

- the machine's own Docker engine builds images (installed and started by install-host.sh
  on a Debian machine where none runs);
- a registry container (Debian's docker-registry, htpasswd auth) stands in for GHCR, published
  on 127.0.0.1:5000 so `localhost:5000/...` names work for the builder;
- a staging-host container with its own dockerd, Compose v2 and sshd; it shares no image
  store with the builder. A socat forwarder inside it carries `localhost:5000` to the registry
  over the testbed network, so an image has the same name on both sides. Its SSH port and the
  app's port are published on 127.0.0.1 only.

`up` is idempotent and writes `.env.testbed`; `down` removes everything it made.

Several testbeds can run side by side (the parallel test suite runs one per worker): instance N
(TESTBED_INSTANCE, `inv testbed.up --instance N`) derives every name, label, subnet and port
from N; instance 0 is the one the README's commands use. The images are built once and shared
(under a lock); each instance has its own registry, staging host, network, volumes, Docker
client config and env file, and `down` removes only its own.
"""
import contextlib
import fcntl
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import requests

from fabfile.errors import DeployError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STATE = HERE / ".state"
CACHE = HERE / ".cache"

INSTANCE = int(os.environ.get("TESTBED_INSTANCE", "0"))
if not 0 <= INSTANCE <= 60:
    raise DeployError(f"TESTBED_INSTANCE={INSTANCE} must be a number from 0 to 60")
PREFIX = "cm-testbed" if INSTANCE == 0 else f"cm-testbed{INSTANCE}"
ENV_FILE = ROOT / (".env.testbed" if INSTANCE == 0 else f".env.testbed-{INSTANCE}")
ACME_CA_BUNDLE = STATE / f"acme-ca-{INSTANCE}.pem"

LABEL = "cm-testbed=1"                          # every testbed's (the images: shared)
INSTANCE_LABEL = f"cm-testbed.instance={INSTANCE}"
NETWORK = PREFIX
SUBNET = f"10.213.{INSTANCE}.0/24"              # the staging hosts' own ranges: 10.213.64.0/18 up
REGISTRY = f"{PREFIX}-registry"
HOST = f"{PREFIX}-staging"
VOLUMES = (f"{PREFIX}-registry-data", f"{PREFIX}-staging-docker")


def port(default: int, offset: int, variable: str = "") -> int:
    """Instance 0: today's port (or its TESTBED_* variable); instance N: 20000 + 100 N + offset."""
    if INSTANCE == 0:
        return int(os.environ.get(variable, default)) if variable else default
    return 20000 + 100 * INSTANCE + offset


REGISTRY_PORT = port(5000, 50)
SSH_PORT = port(2222, 22, "TESTBED_SSH_PORT")
HTTP_PORT = port(8080, 80, "TESTBED_HTTP_PORT")
BASELINE_HTTP_PORT = port(8081, 81, "TESTBED_BASELINE_HTTP_PORT")  # `inv bench`
HTTPS_PORT = port(8443, 43, "TESTBED_HTTPS_PORT")
# The instance's ACME server (pebble) and its DNS (challtestsrv), on this machine's loopback.
ACME = f"{PREFIX}-acme"
ACME_PORTS = {"ACME_PORT": port(14000, 40), "ACME_MANAGEMENT_PORT": port(15000, 41),
              "DNS_PORT": port(8053, 53), "DNS_MANAGEMENT_PORT": port(8055, 55),
              "HTTP01_PORT": HTTP_PORT}
# The docker client's logins: an instance's own, so that parallel instances never write one file.
if INSTANCE:
    os.environ.setdefault("DOCKER_CONFIG", str(STATE / f"docker-{INSTANCE}"))
# Bumped when the containers' run arguments change, so `up` replaces older ones.
LAYOUT = "5"
BASE_IMAGE = "cm-testbed/bookworm"
# Built here, pushed to the testbed registry: stand-ins for postgres:16-alpine, redis:7-alpine
# and nginx:1.27-alpine (the edge proxy).
STAND_INS = {"postgres": "cm-testbed/postgres:15", "redis": "cm-testbed/redis:7",
             "edge": "cm-testbed/nginx:1.22", "docker-cli": "cm-testbed/docker-cli:24"}

# Docker-in-Docker without --privileged (which some machines refuse: no CAP_SYS_RESOURCE).
DIND_FLAGS = ["--cap-add=ALL", "--cap-drop=SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
              "--security-opt", "apparmor=unconfined", "--security-opt", "systempaths=unconfined",
              "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw"]


def log(text):
    print(f"[testbed] {text}", flush=True)


def sh(*argv, stdin=None, check=True, quiet=True):
    """Run a local command (argv, no shell); return stdout. Secrets go on stdin only."""
    result = subprocess.run([str(a) for a in argv], input=stdin, text=True,
                            stdout=subprocess.PIPE if quiet else None,
                            stderr=subprocess.PIPE if quiet else None)
    if check and result.returncode != 0:
        raise DeployError(f"testbed: `{' '.join(map(str, argv[:4]))} ...` failed:\n"
                          f"{(result.stderr or '')[-2000:]}")
    return result.stdout or "" if quiet else ""


def ok(*argv) -> bool:
    return subprocess.run([str(a) for a in argv], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def wait_for(what, check, timeout=60.0, interval=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise DeployError(f"testbed: {what} not ready after {timeout:.0f}s")


def up(swarm=False):
    """Bring the testbed up (idempotent) and write .env.testbed (with `swarm`, also the three
    Swarm nodes of testbed/swarm.py and .env.testbed-swarm). Returns the env file path."""
    started = time.monotonic()
    ensure_engine()
    with shared_work():
        ensure_base_image()
        build_images()
        creds = ensure_secrets()
    replace_foreign_testbed(creds["TESTBED_ID"])
    ensure_network()
    ensure_registry(creds["TESTBED_ID"])
    ensure_staging_host(creds["TESTBED_ID"])
    ensure_acme(creds["TESTBED_ID"])
    push_stand_ins(creds)
    write_env_file(creds, known_hosts_line())
    if swarm:
        from . import swarm as swarm_nodes
        swarm_nodes.up(creds["TESTBED_ID"])
        swarm_nodes.write_env_file(ENV_FILE.read_text(),
                                   known_hosts_line(swarm_nodes.MANAGER, swarm_nodes.SSH_PORT))
        log(f"swarm ready: ssh deploy@127.0.0.1:{swarm_nodes.SSH_PORT}, app "
            f"http://127.0.0.1:{swarm_nodes.HTTP_PORT}; wrote {swarm_nodes.ENV_FILE.name}")
    log(f"ready in {time.monotonic() - started:.0f}s: registry 127.0.0.1:{REGISTRY_PORT}, "
        f"ssh deploy@127.0.0.1:{SSH_PORT}, app http://127.0.0.1:{HTTP_PORT}; wrote {ENV_FILE.name}")
    return ENV_FILE


@contextlib.contextmanager
def shared_work():
    """What every instance shares (the images, the credentials), made by one at a time."""
    CACHE.mkdir(exist_ok=True)
    with open(CACHE / "shared.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_engine():
    if ok("docker", "info") and compose_plugin():
        return
    log("installing/starting the Docker engine (testbed/install-host.sh)")
    subprocess.run(["bash", str(HERE / "install-host.sh")], check=True)


def compose_plugin():
    """The builder's Compose v2 CLI plugin binary (the staging host image gets a copy)."""
    candidates = ["/usr/libexec/docker/cli-plugins", "/usr/lib/docker/cli-plugins",
                  "/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
                  os.path.expanduser("~/.docker/cli-plugins")]
    return next((Path(d) / "docker-compose" for d in candidates
                 if (Path(d) / "docker-compose").is_file()), None)


def image_exists(name) -> bool:
    return ok("docker", "image", "inspect", name)


def ensure_base_image():
    """A Debian bookworm base made with debootstrap (no public registry is reachable)."""
    if not image_exists(BASE_IMAGE):
        log("making the bookworm base image with debootstrap (about 30 s)")
        rootfs = CACHE / "bookworm-rootfs"
        shutil.rmtree(rootfs, ignore_errors=True)
        sh("debootstrap", "--variant=minbase", "bookworm", rootfs, "http://deb.debian.org/debian")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", BASE_IMAGE], stdin=tar.stdout, check=True,
                       stdout=subprocess.DEVNULL)
        tar.wait()
        shutil.rmtree(rootfs, ignore_errors=True)
    # The app's Dockerfiles say FROM debian:bookworm-slim; offline, that name is this image.
    if not image_exists("debian:bookworm-slim"):
        sh("docker", "tag", BASE_IMAGE, "debian:bookworm-slim")


def build_images():
    shutil.copy(compose_plugin(), HERE / "images" / "staging-host" / "docker-compose")
    for name, tag in [("registry", "cm-testbed/registry"), ("staging-host", "cm-testbed/staging-host"),
                      ("acme", "cm-testbed/acme"), *STAND_INS.items()]:
        log(f"build {tag}")
        sh("docker", "build", "--quiet", "--label", LABEL, "-t", tag, HERE / "images" / name)


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


def container_running(name) -> bool:
    out = subprocess.run(["docker", "inspect", "--format", "{{.State.Running}}", name],
                         capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip() == "true"


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


def acme_answers() -> bool:
    try:
        return requests.get(f"https://127.0.0.1:{ACME_PORTS['ACME_PORT']}/dir", timeout=1,
                            verify=str(ACME_CA_BUNDLE)).status_code == 200
    except requests.RequestException:
        return False


def ensure_acme(testbed_id):
    """The instance's ACME server, on this machine's network (it checks challenges at the
    staging host's published port 80); its CAs (its API's and the one that signs what it
    issues, new at each start) written to ACME_CA_BUNDLE for the clients here."""
    if not container_running(ACME):
        sh("docker", "rm", "-f", ACME, check=False)
        sh("docker", "run", "-d", "--name", ACME, "--label", LABEL, "--label", INSTANCE_LABEL,
           "--label", f"cm-testbed.id={testbed_id}-{LAYOUT}", "--network", "host",
           *(f"--env={name}={value}" for name, value in ACME_PORTS.items()), "cm-testbed/acme")
    wait_for("ACME server's certificate", lambda: ok("docker", "exec", ACME, "test", "-s",
                                                     "/state/api-cert.pem"), 30)
    write_atomically(ACME_CA_BUNDLE, sh("docker", "exec", ACME, "cat", "/state/api-cert.pem"))
    wait_for("ACME server", acme_answers, 30)
    root = requests.get(f"https://127.0.0.1:{ACME_PORTS['ACME_MANAGEMENT_PORT']}/roots/0",
                        timeout=5, verify=str(ACME_CA_BUNDLE)).text
    write_atomically(ACME_CA_BUNDLE, ACME_CA_BUNDLE.read_text() + root)


def https_settings(**more) -> dict:
    """The settings of a deploy over HTTPS on this instance, its certificate from its ACME server
    (REQUESTS_CA_BUNDLE: the clients here trust that server's CAs, as they trust a public one)."""
    return {"EDGE_TLS": "acme", "STAGING_URL": f"https://localhost:{HTTPS_PORT}", "HTTPS_PORT": "443",
            "ACME_DIRECTORY": f"https://127.0.0.1:{ACME_PORTS['ACME_PORT']}/dir",
            "REQUESTS_CA_BUNDLE": str(ACME_CA_BUNDLE), "TLS_RENEW_DAYS": "0.5", **more}


def point_dns(name: str, address: str) -> None:
    """The ACME server's DNS answers `address` for `name` (another server than ours)."""
    requests.post(f"http://127.0.0.1:{ACME_PORTS['DNS_MANAGEMENT_PORT']}/add-a", timeout=5,
                  json={"host": name.rstrip(".") + ".", "addresses": [address]}).raise_for_status()


def ssh_banner(port=SSH_PORT) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            return conn.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def push_stand_ins(creds):
    if INSTANCE:
        Path(os.environ["DOCKER_CONFIG"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    sh("docker", "login", f"localhost:{REGISTRY_PORT}", "--username", "pusher", "--password-stdin",
       stdin=creds["REGISTRY_PASSWORD"])
    for local in STAND_INS.values():
        remote = stand_in_ref(local)
        sh("docker", "tag", local, remote)
        sh("docker", "push", "--quiet", remote)


def stand_in_ref(local: str) -> str:
    return f"localhost:{REGISTRY_PORT}/testbed/{local.split('/', 1)[1]}"


def known_hosts_line(container=HOST, port=SSH_PORT) -> str:
    """The host's own public key, read from inside it (not from the network), as known_hosts."""
    key = sh("docker", "exec", container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()
    return f"[127.0.0.1]:{port} {key[0]} {key[1]}"


BARE_HOST = f"{PREFIX}-bare"
BARE_SSH_PORT = port(2223, 23, "TESTBED_BARE_SSH_PORT")


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


def write_atomically(path: Path, text: str) -> None:
    """Written beside it (mode 0600), then renamed: a reader sees the old file or the new one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


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
    from .swarm import NODES
    names = [REGISTRY, HOST, BARE_HOST, *NODES]
    containers = set(sh("docker", "ps", "-aq", "--no-trunc", "--filter",
                        f"label={INSTANCE_LABEL}").split())
    for name in names:
        found = subprocess.run(["docker", "inspect", "--type", "container", "--format", "{{.Id}}",
                                name], capture_output=True, text=True)
        containers |= {found.stdout.strip()} if found.returncode == 0 else set()
    if containers:
        sh("docker", "rm", "-f", "-v", *sorted(containers))
    volumes = sh("docker", "volume", "ls", "-q", "--filter", f"label={INSTANCE_LABEL}").split()
    volumes += [v for v in (*VOLUMES, *(f"{n}-docker" for n in NODES))
                if v not in volumes and ok("docker", "volume", "inspect", v)]
    for volume in volumes:
        sh("docker", "volume", "rm", volume)
    if ok("docker", "network", "inspect", NETWORK):
        sh("docker", "network", "rm", NETWORK)
