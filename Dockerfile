# regcred operator image. Node 24 runs the TypeScript sources directly (type stripping), so
# there is no compile stage: one stage installs production dependencies, the final one runs.
# Unverified here: these machines have no Docker engine (see README).
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY src ./src
USER 65532:65532
ENTRYPOINT ["node", "src/main.ts"]
