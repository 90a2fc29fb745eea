"""The Swarm part of the testbed (`inv testbed.up --swarm`): three more staging-host containers
beside the compose testbed, each with its own Docker engine, joined as one Swarm (a manager and
two workers) on the testbed network. They pull from the same registry (each has the
`localhost:<registry port>` forwarder). Only the manager is reachable from here: SSH on
127.0.0.1:2224, the app on 127.0.0.1:8082 (instance 0; other instances: testbed.port). The
manager is also the node labelled for data (postgres, redis).
Writes `.env.testbed-swarm` (`.env.testbed-<N>-swarm`); `inv testbed.down` removes it with the rest.
"""
import subprocess

from .hosts import ensure_container, ensure_volume, ssh_banner
from .names import DIND_FLAGS, NETWORK, STATE, SWARM_NODES, port
from .names import ENV_FILE as COMPOSE_ENV_FILE
from .run import container_running, log, ok, sh, wait_for, write_atomically

NODES = SWARM_NODES
MANAGER = NODES[0]
SSH_PORT = port(2224, 24, "TESTBED_SWARM_SSH_PORT")
HTTP_PORT = port(8082, 82, "TESTBED_SWARM_HTTP_PORT")
ENV_FILE = COMPOSE_ENV_FILE.with_name(COMPOSE_ENV_FILE.name + "-swarm")
# Overlay networks' addresses: apart from the testbed network and every engine's own ranges.
ADDRESS_POOL = "10.214.0.0/16"


def up(testbed_id: str) -> None:
    """Start the three nodes (idempotent), form the swarm, label the data node."""
    for index, name in enumerate(NODES):
        args = ["--hostname", f"swarm-{index + 1}", "--init", "--restart", "unless-stopped",
                "-v", f"{name}-docker:/var/lib/docker",
                "-v", f"{STATE / 'deploy_key.pub'}:/home/deploy/.ssh/authorized_keys:ro"]
        if name == MANAGER:
            args += ["-p", f"127.0.0.1:{SSH_PORT}:22", "-p", f"127.0.0.1:{HTTP_PORT}:80"]
        ensure_volume(f"{name}-docker")
        if not container_running(name):
            ensure_container(name, [*DIND_FLAGS, *args, "cm-testbed/staging-host"], testbed_id)
    for name in NODES:
        wait_for(f"{name} engine", lambda n=name: ok("docker", "exec", n, "docker", "info"), 60)
    manager_ip = address(MANAGER)
    if swarm_state(MANAGER) != "active":
        log("forming the swarm: swarm-1 manager, swarm-2 and swarm-3 workers")
        sh("docker", "exec", MANAGER, "docker", "swarm", "init", "--advertise-addr", manager_ip,
           "--default-addr-pool", ADDRESS_POOL)
    token = sh("docker", "exec", MANAGER, "docker", "swarm", "join-token", "-q", "worker").strip()
    for name in NODES[1:]:
        if swarm_state(name) != "active":
            sh("docker", "exec", name, "docker", "swarm", "join", "--token", token,
               "--advertise-addr", address(name), f"{manager_ip}:2377")
    wait_until_ready()
    sh("docker", "exec", MANAGER, "docker", "node", "update", "--label-add",
       "classroom-manager.data=true", "swarm-1")
    wait_for("swarm manager sshd", lambda: ssh_banner(SSH_PORT), 30)


def wait_until_ready() -> None:
    """Until the three nodes are Ready (a node that was stopped rejoins by itself once started)."""
    wait_for("three Ready nodes", lambda: ready_nodes() == 3, 60)


def address(name: str) -> str:
    return sh("docker", "inspect", "--format",
              f'{{{{(index .NetworkSettings.Networks "{NETWORK}").IPAddress}}}}', name).strip()


def swarm_state(name: str) -> str:
    return sh("docker", "exec", name, "docker", "info", "--format",
              "{{.Swarm.LocalNodeState}}", check=False).strip()


def ready_nodes() -> int:
    out = subprocess.run(["docker", "exec", MANAGER, "docker", "node", "ls", "--format",
                          "{{.Status}}"], capture_output=True, text=True).stdout
    return out.split().count("Ready")


def write_env_file(compose_env: str, known_hosts: str) -> None:
    """The compose testbed's settings, pointed at the swarm manager and the Swarm target."""
    lines = [line for line in compose_env.splitlines()
             if not line.startswith(("STAGING_PORT=", "STAGING_KNOWN_HOSTS=", "STAGING_URL=", "#"))]
    lines = ["# Written by `inv testbed.up --swarm`: the testbed swarm's settings. Do not commit.",
             "DEPLOY_TARGET='swarm'", f"STAGING_PORT='{SSH_PORT}'",
             f"STAGING_KNOWN_HOSTS='{known_hosts}'", f"STAGING_URL='http://127.0.0.1:{HTTP_PORT}'",
             *lines]
    write_atomically(ENV_FILE, "\n".join(lines) + "\n")
