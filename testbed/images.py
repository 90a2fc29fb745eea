"""The images every instance shares: the engine, a Debian base made with debootstrap, the
stand-ins for the public images, built once and pushed to each instance's registry."""
import contextlib
import fcntl
import os
import shutil
import subprocess
from pathlib import Path

from .names import BASE_IMAGE, CACHE, HERE, INSTANCE, LABEL, REGISTRY_PORT, STAND_INS
from .run import image_exists, log, ok, sh


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

def ensure_base_image():
    """A Debian bookworm base made with debootstrap (no public registry is reachable)."""
    if not image_exists(BASE_IMAGE):
        log("making the bookworm base image with debootstrap (about 30 s)")
        rootfs = CACHE / "bookworm-rootfs"
        unmount_under(rootfs)
        shutil.rmtree(rootfs, ignore_errors=True)
        sh("debootstrap", "--variant=minbase", "bookworm", rootfs, "http://deb.debian.org/debian")
        unmount_under(rootfs)   # debootstrap can leave the rootfs's /proc mounted
        slim(rootfs)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", BASE_IMAGE], stdin=tar.stdout, check=True,
                       stdout=subprocess.DEVNULL)
        tar.wait()
        shutil.rmtree(rootfs, ignore_errors=True)
    # The app's Dockerfiles say FROM debian:bookworm-slim; offline, that name is this image.
    if not image_exists("debian:bookworm-slim"):
        sh("docker", "tag", BASE_IMAGE, "debian:bookworm-slim")


# As Debian's own -slim images do: apt keeps no package files or lists in an image, dpkg
# installs no documentation, manual pages or translations. Every image built FROM the base is
# smaller, and so every push to a registry and pull onto a host.
REMOVE_PACKAGES = ('"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb '
                   '/var/cache/apt/*.bin || true"')
APT_CLEAN = (f"DPkg::Post-Invoke {{ {REMOVE_PACKAGES}; }};\n"
             f"APT::Update::Post-Invoke {{ {REMOVE_PACKAGES}; }};\n"
             'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n')
DPKG_EXCLUDES = """path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""


def slim(rootfs: Path):
    """The debootstrapped tree as small as a -slim image: no package caches, lists, docs."""
    (rootfs / "etc/apt/apt.conf.d/docker-clean").write_text(APT_CLEAN)
    (rootfs / "etc/dpkg/dpkg.cfg.d/docker").write_text(DPKG_EXCLUDES)
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*",
                    "usr/share/doc/*", "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*"):
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.name not in ("lock", "partial", "copyright", "locale.alias"):
                path.unlink()


def unmount_under(folder: Path):
    """Unmount whatever is mounted below `folder` (deepest first), so that nothing walks into
    a live /proc."""
    root = str(folder.resolve())
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted((p for p in points if p.startswith(root + "/")), reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def build_images():
    shutil.copy(compose_plugin(), HERE / "images" / "staging-host" / "docker-compose")
    for name, tag in [("registry", "cm-testbed/registry"), ("staging-host", "cm-testbed/staging-host"),
                      ("acme", "cm-testbed/acme"), *STAND_INS.items()]:
        log(f"build {tag}")
        sh("docker", "build", "--quiet", "--label", LABEL, "-t", tag, HERE / "images" / name)

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


# The apps' Dockerfiles (context, Dockerfile): built once on this machine's engine before the
# tests, so that each worker's first deploy finds their package layers in the build cache.
APP_BUILDS = [("app/backend", "Dockerfile"), ("app/frontend", "Dockerfile"),
              ("examples/story-app", "docker/Dockerfile.backend"),
              ("examples/story-app", "docker/Dockerfile.frontend")]


def warm_build_cache():
    """Build every app Dockerfile of this repository, side by side, and keep only the cache
    (the images are untagged): what `.ci/run` does while the testbed instances start."""
    with shared_work():
        ensure_base_image()
    builds = [subprocess.Popen(["docker", "build", "--quiet", "-f", dockerfile, "."],
                               cwd=HERE.parent / context, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
              for context, dockerfile in APP_BUILDS]
    for (context, dockerfile), build in zip(APP_BUILDS, builds):
        _, errors = build.communicate()
        if build.returncode:
            raise RuntimeError(f"warming {context}/{dockerfile}: {errors.strip()[-500:]}")
    log(f"build cache warm: {len(APP_BUILDS)} app Dockerfiles")
