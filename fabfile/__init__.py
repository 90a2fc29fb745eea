"""What runs against the staging host, and the pure logic that decides it.

Read `deploy.py` first: it tells a deploy's story top to bottom. Then, by concern:

- deploy.py     the deploy, top to bottom (read it first)
- config.py     settings from invoke.yaml, .env and the environment, validated once
- shell.py      commands as data (`Command`) and the one place that runs them (`Runner`)
- transport.py  how actions reach a machine: SSH (one connection), local, or a recorder
- host.py       the SSH connection: pinned host key, liveness watch, reconnect
- images.py     build from a commit, tag, push, digests (local docker)
- pins.py       postgres, redis, the edge and the Swarm job image run by digest, pinned once
- disk.py       free space on the host, checked before a pull or a dump
- compose.py    compose commands on the host (stable project, blue/green slots), parsing docker
- running.py    what runs now, read from the containers; waiting for a slot to be healthy
- slots.py      blue/green: start in the idle slot, check, switch the edge, retire the old slot
- declared.py   what invoke.yaml declares (images, routes, roles, commands, checks): typed, checked
- edge.py       the edge proxy's routes (invoke.yaml `routes`): live slot, candidate, Swarm
- health.py     the app's health contract; deciding healthy / waiting / failed; the polling loop
- lock.py       the deploy lock (flock held open by a process on the host, through the transport)
- ledger.py     the append-only release ledger on the host
- backup.py     pg_dump before migrations, pg_restore for rollback --restore-db
- targets.py    where releases run: the interface both targets implement
- compose_target.py one server: blue/green slots behind the edge (the default)
- swarm_target.py   a Docker Swarm: stable and app stacks, start-first updates
- swarm.py      Swarm commands (stack deploy, services, tasks) and their parsing
- rollback.py   `deploy.rollback`: put a retained release back
- undo.py       recovery as data: each step's compensation, undone in reverse on failure
- prune.py      choosing what of this project to remove after success
- status.py     `deploy.status` and `deploy.history`
- incident.py   `deploy.logs` and `deploy.exec` on the live release
- plan.py       `--dry-run`: the deploy against a simulated host, printed as its plan
- provision.py  `staging.setup`: a fresh Debian/Ubuntu server made ready for deploys
- certificate.py HTTPS at the edge: its certificate by ACME, renewed, installed by a reload
- ci_gate.py    the GitHub check that CI passed for the sha, on main (in Actions)
- notify.py     the webhook after a deploy
- report.py     step lines, the summary, secret redaction
- interrupts.py Ctrl-C / SIGTERM as a recoverable exception
- envfile.py    dotenv files: the user's read literally, the host's written as Compose reads them
- errors.py     errors a user can act on
"""
