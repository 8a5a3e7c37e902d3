# BYSU: one image for every service (scheduler, workers, dashboard, CLI).
# Build: docker build -t bysu .      Run: docker run --rm bysu --help

# Stage 1: install the production dependencies with the full toolchain at hand.
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# Stage 2: the runtime image, without npm's caches, running as a non-root user.
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    BYSU_CONFIG=/etc/bysu/bysu.yaml \
    BYSU_LOG_FORMAT=json
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY src ./src
COPY workers ./workers
COPY scheduler ./scheduler
COPY contrib ./contrib
# The repository volume is created owned by the runtime user; the image's `node` user is uid 1000.
RUN mkdir -p /var/lib/bysu && chown node:node /var/lib/bysu && chmod 0700 /var/lib/bysu
USER node
VOLUME ["/var/lib/bysu"]
EXPOSE 3000
# bin/bysu.js runs itself (its #! line carries the V8 flag the snapshot worker wants).
ENTRYPOINT ["/app/bin/bysu.js"]
CMD ["up"]
