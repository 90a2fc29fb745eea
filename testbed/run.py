"""Running things on this machine for the testbed: commands, waiting, files written whole."""
import os
import subprocess
import time
from pathlib import Path

from staging_deploy.errors import DeployError


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

def image_exists(name) -> bool:
    return ok("docker", "image", "inspect", name)

def container_running(name) -> bool:
    out = subprocess.run(["docker", "inspect", "--format", "{{.State.Running}}", name],
                         capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip() == "true"

def write_atomically(path: Path, text: str) -> None:
    """Written beside it (mode 0600), then renamed: a reader sees the old file or the new one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)
