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
import time

from .acme import ensure_acme, https_settings, point_dns  # noqa: F401
from .hosts import (  # noqa: F401
    down,
    down_all,
    ensure_network,
    ensure_registry,
    ensure_secrets,
    ensure_staging_host,
    known_hosts_line,
    pin_host_key,
    remove_bare_host,
    replace_foreign_testbed,
    start_bare_host,
    start_registry,
    write_env_file,
)
from .images import build_images, ensure_base_image, ensure_engine, push_stand_ins, shared_work
from .names import (  # noqa: F401
    ACME,
    ACME_CA_BUNDLE,
    ACME_PORTS,
    BARE_HOST,
    BARE_SSH_PORT,
    BASE_IMAGE,
    BASELINE_HTTP_PORT,
    CACHE,
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
    PREFIX,
    REGISTRY,
    REGISTRY_PORT,
    ROOT,
    SSH_PORT,
    STAND_INS,
    STATE,
    SUBNET,
    VOLUMES,
    port,
)
from .run import log, ok, sh, wait_for  # noqa: F401


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
