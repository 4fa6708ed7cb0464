# regcred operator image. Node 24 runs the TypeScript sources directly (type stripping), so there
# is no compile stage: one stage installs production dependencies, the final one runs them.
# Unverified here: these machines have no Docker engine (see README, "The image").
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
# node directly, in exec form, so that SIGTERM reaches the operator. A small young generation
# (2 MiB semi-spaces) keeps the heap close to its live size for little CPU (measured with npm run
# bench, see README "Performance"; --optimize-for-size saved no more memory and cost 50 % more
# CPU); the old-space cap is 3/4 of the Deployment's 512Mi memory limit, so V8 collects harder
# before the kernel would kill the Pod. npm run bench runs regcred with exactly these flags.
ENTRYPOINT ["node", "--max-old-space-size=384", "--max-semi-space-size=2", "src/main.ts"]
