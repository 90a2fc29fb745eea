#!/bin/sh
# The story's original pipeline, host side, literally (deploy-staging.yml: "Deploy to Staging"
# then "Health Check"), in its own compose project in /opt/baseline. Only the `mark` lines are
# added, so the benchmark can tell when the pull, the up and the sleep began.
mark() { echo "MARK $1 $(date +%s.%N)"; }
cd /opt/baseline
mark pull
docker compose pull
mark up
docker compose up -d --remove-orphans
mark prune
docker system prune -f
mark sleep
sleep 30
curl -f "$STAGING_URL/api/health" || exit 1
