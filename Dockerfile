# One image for every role (ROLE=api|relay|worker): the compiled gateway under tini, as a non-root
# user, with production dependencies only. One-off commands run compiled in the same image:
# `node dist/cli/migrate.js up` (dbmate is a runtime dependency) and
# `node dist/cli/merchant-create.js --name <name> --json`.
# Node 22 LTS, an exact tag (the tests run on Node 20 too; the code needs nothing newer than 20).

# --- build: the Prisma client, tsc to dist/, the demo page's bundle -----------------------------
FROM node:22.20.0-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# The npm workspaces (the pure retry package the server runs, and the client SDK): npm ci needs
# each one's package.json to match the lockfile.
COPY packages/retry/package.json ./packages/retry/
COPY packages/client/package.json ./packages/client/
COPY prisma ./prisma
COPY prisma.config.ts ./
# The Prisma client is generated at install (postinstall), which needs the prisma CLI (a dev dependency).
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY packages/retry ./packages/retry
COPY packages/client ./packages/client
COPY src ./src
COPY scripts ./scripts
COPY demo ./demo
COPY db ./db
RUN npm run -s build

# --- runtime --------------------------------------------------------------------------------------
FROM node:22.20.0-bookworm-slim AS runtime
# tini reaps zombies and forwards SIGTERM to node, so the gateway's graceful drain runs on `docker stop`.
RUN apt-get update \
  && apt-get install -y --no-install-recommends tini \
  && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production PORT=4000
# The api's resident set (docs/benchmarks.md, "api RSS"): with node's default heap limit (a
# share of the machine's memory: 4,144 MB on a 24 GB machine, which gives V8 its largest heap
# growing factor, 4) the old space grew to three or four times its live data under load before a
# full collection, and V8's worker threads kept up to 90 MB in glibc's per-thread malloc arenas.
# With a 512 MB old space (about eight times the live set at 64 connections) V8's growing factor
# is about 1.4; two arenas bound malloc's share. scripts/harness/built.ts reads these lines, so
# the bench and the tests that run dist/ run with them too.
ENV NODE_OPTIONS=--max-old-space-size=512 MALLOC_ARENA_MAX=2
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/retry/package.json ./packages/retry/
# --ignore-scripts: postinstall generates the Prisma client with the prisma CLI, a dev dependency;
# the generated client is already compiled into dist/.
# --workspace … --include-workspace-root: the root's production dependencies and the one
# workspace the server runs (@payments-gateway/retry, linked into node_modules). The client SDK's
# workspace is left out, and with it its peers: no @apollo/client, rxjs, esbuild or tsx here.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
    --workspace @payments-gateway/retry --include-workspace-root \
  && npm cache clean --force
COPY --from=build /app/packages/retry/dist ./packages/retry/dist
COPY --from=build /app/dist ./dist
# The SQL migrations that dist/cli/migrate.js applies.
COPY db/migrations ./db/migrations
# The checkout demo's page (served outside production only; its script is in dist/public/).
COPY demo/index.html ./demo/index.html
USER node
EXPOSE 4000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 4000) + '/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/main.js"]
