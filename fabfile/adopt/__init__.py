"""Bringing a project in: `staging-deploy staging.init` reads the team's own compose file and
writes what the tool needs (compose_file.py reads, decide.py decides, render.py writes text,
files.py puts it on disk without overwriting what the team changed)."""
