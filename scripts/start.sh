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
  # What the runtime image sets for node (the Dockerfile's ENV; docs/benchmarks.md, "The api's
  # resident set"), unless the environment says otherwise. A test keeps the two the same.
  export NODE_OPTIONS="${NODE_OPTIONS---max-old-space-size=512}"
  export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX-2}"
  exec node dist/main.js
fi
exec tsx scripts/start.ts
