"""The Swarm target: a stable stack and an app stack, start-first updates."""
