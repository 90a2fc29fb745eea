"""This repository's tasks: the tool's own (`deploy.*`, `staging.*`, from the installed
`staging_deploy` package, the same as `staging-deploy X`), and the tasks that drive this
repository's test environment (`testbed.*`, `bench`, `bench-db`; testbed/), which are no part
of the tool. `inv --list` shows them all.
"""
import os

from invoke import Collection, Context, task

from staging_deploy.cli import collection
from staging_deploy.cli.boundary import user_errors, whole_number
from staging_deploy.errors import DeployError

INSTANCE_HELP = ("which testbed (0-60; default 0): each has its own names, ports and "
                 ".env.testbed-<N>, so several run side by side")


def testbed_instance(instance: str) -> None:
    """Select testbed instance N for the testbed package (it reads TESTBED_INSTANCE)."""
    if not (instance.isascii() and instance.isdigit()) or int(instance) > 60:
        raise DeployError(f"--instance {instance!r} must be a whole number from 0 to 60")
    os.environ["TESTBED_INSTANCE"] = str(int(instance))


@task(name="up", help={"swarm": "also a three-node Docker Swarm (instance 0: manager ssh "
                                 "127.0.0.1:2224, app 127.0.0.1:8082) and .env.testbed-swarm",
                       "instance": INSTANCE_HELP})
@user_errors
def testbed_up(c: Context, swarm: bool = False, instance: str = "0") -> None:
    """Start the local testbed (engine, registry, SSH staging host) and write .env.testbed."""
    testbed_instance(instance)
    from testbed import up
    path = up(swarm=swarm)
    print(f"next: DEPLOY_ENV_FILE={path.name} inv deploy.staging --sha $(git rev-parse HEAD)")


@task(name="down", help={"images": "also remove the images the testbed built",
                         "instance": INSTANCE_HELP, "all": "every instance (what the tests made)"})
@user_errors
def testbed_down(c: Context, images: bool = False, instance: str = "0", all: bool = False) -> None:
    """Remove a testbed: its containers, network, volumes and env files (the keys with the last)."""
    testbed_instance(instance)
    from testbed import down, down_all
    if all:
        down_all()
    down(remove_images=images)


@task(name="warm")
@user_errors
def testbed_warm(c: Context) -> None:
    """Build the apps' images once on this machine, so the first deploys reuse their layers."""
    from testbed.images import warm_build_cache
    warm_build_cache()


@task(help={"runs": "runs of each scenario (median reported; default 5)",
            "swarm-runs": "runs of each scenario on the testbed's swarm (default 3; 0: none)",
            "https": "ours over HTTPS (EDGE_TLS=acme, the testbed's ACME server), with what a "
                     "TLS handshake costs a request"})
@user_errors
def bench(c: Context, runs: str = "5", swarm_runs: str = "3", https: bool = False) -> None:
    """Benchmark the story's original pipeline against ours (compose and swarm) -> docs/BENCHMARKS.md."""
    from testbed.bench import main
    print(main(whole_number("--runs", runs),
               0 if swarm_runs == "0" else whole_number("--swarm-runs", swarm_runs), https))
    # left up for a look at what ran; the suite run beside it would be slowed (and fail)
    print("the bench's testbed and its swarm are still up: `inv testbed.down --all` removes "
          "them before `.ci/run`")


@task(name="bench-db", help={"runs": "deploys per size and side (median reported; default 3)"})
@user_errors
def bench_db(c: Context, runs: str = "3") -> None:
    """Deploy time against database size (with and without the migration check) and against
    the ledger's size -> docs/BENCHMARKS.md."""
    from testbed import bench_ledger
    from testbed.bench_db import main, write
    count = whole_number("--runs", runs)
    text = main(count) + "\n" + bench_ledger.main(count)
    write(text)
    print(text)


namespace = collection()
namespace.add_collection(Collection("testbed", testbed_up, testbed_down, testbed_warm))
namespace.add_task(bench)
namespace.add_task(bench_db)
