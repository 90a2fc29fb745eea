"""staging-deploy: what runs against the staging host, and the pure logic that decides it.

Installed as the package `staging_deploy` (this folder is its source). Read `story/deploy.py`
first: it tells a deploy's story top to bottom. The packages:

- cli/        the tasks users run and the `staging-deploy` command; the project's root
- config/     the settings: invoke.yaml, the dotenv file and the environment, checked once
- transport/  how actions reach a machine: commands as data, the one runner, the SSH session
- story/      the deploy's story both targets share: images, lock, ledger, health, undo, prune
- compose/    the compose target: one server, blue/green slots behind an nginx edge
- swarm/      the Swarm target: a stable stack and an app stack, start-first updates
- ops/        the operator's tasks: status and history, logs and exec, setting up a server
- adopt/      `staging.init`: a project brought in from its own compose file

docs/CODE.md maps every module.
"""
