# BYSU: one image for every service (scheduler, workers, dashboard, CLI).
# Build: docker build -t bysu .      Run: docker run --rm bysu --help

# Stage 1: install the production dependencies with the full toolchain at hand.
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Bull Board's valibot names TypeScript (23 MB, 8% of the image) as a peer for its type definitions only:
# nothing loads it at run time, so it is removed (the compose test runs Bull Board from this image).
RUN npm ci --omit=dev --no-audit --no-fund && rm -rf node_modules/typescript

# Stage 2: compile the TypeScript to dist/ (needs the dev dependencies: TypeScript).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY scripts/build.mjs ./scripts/build.mjs
COPY src ./src
RUN node scripts/build.mjs

# Stage 3: the runtime image, without npm's caches, running as a non-root user.
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    BYSU_CONFIG=/etc/bysu/bysu.yaml \
    BYSU_LOG_FORMAT=json
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY src ./src
COPY contrib ./contrib
# The compiled form; bin/bysu.js runs it because it was built from the sources copied above.
COPY --from=build /app/dist ./dist
# The repository volume is created owned by the runtime user; the image's `node` user is uid 1000.
# It starts empty and unmarked: `bysu init` (compose's one-shot init service) makes it a repository,
# and every other command refuses it until then.
RUN mkdir -p /var/lib/bysu && chown node:node /var/lib/bysu && chmod 0700 /var/lib/bysu
USER node
VOLUME ["/var/lib/bysu"]
EXPOSE 3000
# bin/bysu.js runs itself (its #! line carries the V8 flags the snapshot worker wants).
ENTRYPOINT ["/app/bin/bysu.js"]
CMD ["up"]
