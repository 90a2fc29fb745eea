"""The instance's ACME server (Debian's pebble, Let's Encrypt's test CA) and its DNS, and the
settings of a deploy over HTTPS with a certificate from it."""

import requests

from .names import ACME, ACME_CA_BUNDLE, ACME_PORTS, HTTPS_PORT, INSTANCE_LABEL, LABEL, LAYOUT
from .run import container_running, ok, sh, wait_for, write_atomically


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
