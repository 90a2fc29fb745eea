"""Every testbed instance's names, labels, subnet and ports, derived from its number
(TESTBED_INSTANCE; instance 0 keeps the README's), and the images it is made of."""
import os
from pathlib import Path

from staging_deploy.errors import DeployError

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
SWARM_NODES = tuple(f"{PREFIX}-swarm-{n}" for n in (1, 2, 3))    # testbed/swarm.py

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

BARE_HOST = f"{PREFIX}-bare"

BARE_SSH_PORT = port(2223, 23, "TESTBED_BARE_SSH_PORT")
