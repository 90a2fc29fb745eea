#!/bin/sh
# Apply pending migrations, then serve (the server replaces this shell: it gets the signals).
set -e
node /app/scripts/migrate.js deploy
exec node /app/src/server.js
