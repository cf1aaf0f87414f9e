# One image for every role (ROLE=api|relay|worker). TypeScript runs through tsx: no build step.
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
COPY prisma ./prisma
COPY prisma.config.ts ./
# The Prisma client is generated at install (postinstall), which needs the prisma CLI (a dev dependency).
RUN npm ci --no-audit --no-fund && npm cache clean --force
COPY . .
ENV NODE_ENV=production PORT=4000
USER node
EXPOSE 4000
CMD ["npx", "tsx", "src/main.ts"]
