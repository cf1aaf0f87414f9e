#!/bin/sh
# `npm start`. In production (NODE_ENV=production): the compiled gateway and nothing else; it
# never starts or installs services, and stops at once naming DATABASE_URL or REDIS_URL when one
# cannot be reached (docs/contract.md §8). Elsewhere: scripts/start.ts, which makes sure Postgres
# and Redis are there, migrates, and prints the demo merchant's key.
set -e
if [ "$NODE_ENV" = production ]; then
  if [ ! -f dist/main.js ]; then
    echo "dist/main.js is missing: run \`npm run build\` first." >&2
    exit 1
  fi
  exec node dist/main.js
fi
exec tsx scripts/start.ts
