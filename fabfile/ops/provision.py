"""`inv staging.setup`: make a fresh Debian or Ubuntu server ready for deploys, idempotently.

Runs over SSH as an admin user with passwordless sudo (host key pinned like every connection):
Docker Engine and Compose v2 if missing, the deploy user (key only, in the docker group),
STAGING_DIR owned by it, the host's registry login with a read-only pull credential, and the
host key line to pin. Every step first reads the current state and only acts when needed.
"""
from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Dict, Optional, Sequence, Tuple

from ..compose.commands import compose_too_old, compose_version
from ..errors import DeployError
from ..swarm import progress, stacks
from ..transport.commands import Command, cmd
from ..transport.known_hosts import host_key_name
from ..transport.session import load_private_key

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..report import Reporter
    from ..transport.runner import Runner

COMPOSE_PACKAGES = ("docker-compose-v2", "docker-compose-plugin")   # Ubuntu's, Docker's repository's


def sudo(*argv: str, stdin: Optional[str] = None) -> Command:
    """Non-interactive sudo: fails at once (instead of hanging) if it would ask for a password."""
    return cmd("sudo", "-n", *argv, stdin=stdin)


DOCKERD_PATH = sudo("sh", "-c", "command -v dockerd")   # sudo's PATH has the sbin folders


def start_docker(dockerd: str) -> Tuple[Command, ...]:
    """systemd; SysV init; no init system at all (a container): dockerd in the background."""
    return (sudo("systemctl", "start", "docker"), sudo("service", "docker", "start"),
            sudo("start-stop-daemon", "--start", "--background", "--oknodo", "--exec", dockerd))


def apt_install(*packages: str) -> Command:
    return sudo("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
                "--no-install-recommends", *packages)


def deploy_public_key(settings: Settings) -> str:
    """The authorized_keys line for the deploy user, derived from STAGING_SSH_KEY."""
    key = load_private_key(settings.STAGING_SSH_KEY)
    return f"{key.get_name()} {key.get_base64()} deploy@staging\n"


def setup_host(settings: Settings, runner: Runner, reporter: Reporter,
               compose_deb: Optional[str] = None, nodes: Sequence[str] = ()) -> str:
    """Provision the host; return the host key line to pin (STAGING_KNOWN_HOSTS). `nodes`
    (Swarm target): the hostnames that must be in the swarm and Ready."""
    user, directory = settings.STAGING_USER, settings.STAGING_DIR
    with reporter.step("check sudo and the operating system"):
        if not runner.run(sudo("true"), check=False).ok:
            raise DeployError("sudo asks for a password: give the setup user passwordless sudo "
                              "(NOPASSWD) for the setup, or run it as root")
        release = runner.run(cmd("cat", "/etc/os-release")).stdout
        if not any(f"ID={name}" in release or f"ID_LIKE={name}" in release for name in ("debian", "ubuntu")):
            raise DeployError("staging.setup supports Debian and Ubuntu hosts only")

    with reporter.step("Docker Engine"):
        dockerd = runner.run(DOCKERD_PATH, check=False).stdout.strip()
        if dockerd:
            reporter.note("already installed")
        else:
            runner.run(sudo("apt-get", "update", "-q"), "apt-get update")
            runner.run(apt_install("docker.io", "curl", "ca-certificates"), "installing docker.io")
            dockerd = runner.run(DOCKERD_PATH, "finding dockerd").stdout.strip()
        if not runner.run(sudo("docker", "info"), check=False).ok:
            started = any(runner.run(start, check=False).ok for start in start_docker(dockerd))
            if not started or not wait_for_docker(runner):
                raise DeployError("the Docker engine does not start: see `journalctl -u docker` on the host")

    with reporter.step("Docker Compose v2"):
        if not compose_too_old(runner.run(compose_version(), check=False)):
            reporter.note("already installed")
        else:
            install_compose(runner, compose_deb)
            too_old = compose_too_old(runner.run(compose_version(), check=False))
            if too_old:
                raise DeployError(too_old)

    with reporter.step(f"deploy user {user!r} (key only, docker group)"):
        if not runner.run(cmd("id", "--", user), check=False).ok:
            runner.run(sudo("useradd", "--create-home", "--shell", "/bin/bash", "--", user), "useradd")
        runner.run(sudo("usermod", "--append", "--groups", "docker", "--", user), "usermod")
        home = runner.run(cmd("getent", "passwd", "--", user)).stdout.strip().split(":")[5]
        ssh_dir = posixpath.join(home, ".ssh")
        runner.run(sudo("install", "-d", "-m", "0700", "-o", user, "-g", user, "--", ssh_dir))
        keys = posixpath.join(ssh_dir, "authorized_keys")
        line = deploy_public_key(settings)
        if key_in_place(runner, keys, line, user):
            reporter.note("its key is authorized already")
        else:
            runner.run(sudo("tee", keys, stdin=line), "writing authorized_keys")
            runner.run(sudo("chown", "--", f"{user}:{user}", keys))
            runner.run(sudo("chmod", "0600", keys))

    with reporter.step(f"deploy directory {directory} (0700, owned by {user})"):
        runner.run(sudo("install", "-d", "-m", "0700", "-o", user, "-g", user, "--", directory))

    if settings.REGISTRY_PULL_USER:
        with reporter.step(f"log the host in to {settings.REGISTRY} (read-only pull credential)"):
            runner.run(sudo("-u", user, "-H", "docker", "login", "--username",
                            settings.REGISTRY_PULL_USER, "--password-stdin", "--", settings.REGISTRY,
                            stdin=settings.REGISTRY_PULL_PASSWORD), "docker login for the deploy user")
    else:
        reporter.note("REGISTRY_PULL_USER not set: the host is not logged in to the registry "
                      "(fine for public images)")

    if settings.on_swarm:
        setup_swarm(settings, runner, reporter, nodes)
    key = runner.run(cmd("cat", "/etc/ssh/ssh_host_ed25519_key.pub")).stdout.split()
    return f"{host_key_name(settings.STAGING_HOST, settings.STAGING_PORT)} {key[0]} {key[1]}"


def install_compose(runner: Runner, compose_deb: Optional[str]) -> None:
    """The Compose plugin from the given .deb (a local path), or else from the host's apt
    sources."""
    if compose_deb:
        # a folder only the admin may write (a fixed /tmp path could be someone else's file)
        folder = runner.run(cmd("mktemp", "-d"), "a private folder for the package").stdout.strip()
        remote = posixpath.join(folder, "docker-compose-plugin.deb")
        runner.put_file(remote, compose_deb)
        runner.run(sudo("dpkg", "-i", remote), "installing the Compose plugin package")
        runner.run(cmd("rm", "-r", "--", folder), check=False)
    elif not any(runner.run(apt_install(p), check=False).ok for p in COMPOSE_PACKAGES):
        raise DeployError("no Compose v2 package for this host (Debian bookworm has only v1): "
                          "add Docker's apt repository, or pass --compose-deb with a "
                          "docker-compose-plugin .deb")


def setup_swarm(settings: Settings, runner: Runner, reporter: Reporter,
                nodes: Sequence[str] = ()) -> None:
    """The Swarm target: this host a manager (a new swarm if it is in none), a node labelled
    for the data services (this one, if none is), every node's state, and how the other nodes
    join. Fails if one of `nodes` is not in the swarm or not Ready."""
    label = f"{settings.project}.data"
    with reporter.step("Swarm: this host a manager, a node labelled for data"):
        state = runner.run(sudo("docker", "info", "--format",
                                "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}")).stdout.split()
        if state[:1] == ["inactive"]:
            runner.run(sudo("docker", "swarm", "init"), "docker swarm init")
            reporter.note("started a new swarm with this host as its manager")
        elif state[1:2] != ["true"]:
            raise DeployError("this host is in a swarm but not a manager: point STAGING_HOST at a "
                              "manager (`docker node ls` on one lists them)")
        labelled = runner.run(sudo("docker", "node", "ls", "--filter", f"node.label={label}=true",
                                   "--format", "{{.Hostname}}")).stdout.split()
        if not labelled:
            node = runner.run(sudo("docker", "info", "--format", "{{.Swarm.NodeID}}")).stdout.strip()
            runner.run(sudo("docker", "node", "update", "--label-add", f"{label}=true", node),
                       "labelling this node for data")
            labelled = ["this host"]
        reporter.note(f"postgres and redis (and their volumes) live on: {', '.join(labelled)}")
        join = runner.run(sudo("docker", "swarm", "join-token", "worker")).stdout.strip()
        reporter.note("more nodes join with what `docker swarm join-token worker` prints on this "
                      f"host ({len(join.splitlines())} lines; a secret, so not shown here)")
    with reporter.step("Swarm: the nodes"):
        states = progress.node_states(runner.run(sudo(*stacks.list_nodes().argv)).stdout)
        reporter.note(", ".join(f"{name} {state}" for name, state in sorted(states.items())))
        if sum(state == "Ready" for state in states.values()) < 2:
            reporter.note("one node Ready: every replica runs on it; add a worker so that the "
                          "loss of one server does not take staging down")
        problem = nodes_problem(states, nodes)
        if problem:
            raise DeployError(problem)


def nodes_problem(states: Dict[str, str], wanted: Sequence[str]) -> str:
    """What is wrong with the nodes `staging.setup --nodes` names, in one line ("": nothing)."""
    missing = [n for n in wanted if n not in states]
    down = [n for n in wanted if n in states and states[n] != "Ready"]
    problems = []
    if missing:
        problems.append(f"not in the swarm: {', '.join(missing)} (on each, run what `docker swarm "
                        "join-token worker` prints on the manager)")
    if down:
        problems.append(f"not Ready: {', '.join(f'{n} ({states[n]})' for n in down)} (start its "
                        "Docker engine, or `docker node rm` a server that is gone)")
    return "; ".join(problems)


def key_in_place(runner: Runner, keys: str, line: str, user: str) -> bool:
    """Does authorized_keys hold the deploy key, owned by the user or root and writable by
    no one else (what sshd's StrictModes accepts)?"""
    listed = runner.run(sudo("cat", "--", keys), check=False).stdout
    if " ".join(line.split()[:2]) not in listed:
        return False
    owner, _, mode = runner.run(sudo("stat", "-c", "%U %a", "--", keys)).stdout.strip().partition(" ")
    return owner in (user, "root") and not int(mode or "777", 8) & 0o022


def wait_for_docker(runner: Runner, attempts: int = 30) -> bool:
    """Poll `docker info` (as root) once a second until the engine answers."""
    for _ in range(attempts):
        if runner.run(sudo("docker", "info"), check=False).ok:
            return True
        runner.run(cmd("sleep", "1"), check=False)
    return False
