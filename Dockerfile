# vakt container image: `docker build -t vakt .`, or through docker-compose.yml.
#
# With no configuration the container runs everything on its own: HTTP on 8080, the
# embedded MQTT broker on 1883, SQLite in /var/lib/vakt (a volume). Set
# VAKT_DATABASE_URL and VAKT_MQTT_URL to use PostgreSQL and an external broker instead
# (docs/operations.md).

# Build stage. --locked builds exactly the versions in Cargo.lock. FEATURES chooses what
# goes in: `embedded` (the default) keeps the embedded broker for a container that runs
# on its own; docker-compose.yml builds with none, the production build on an external
# broker. The demo and its simulator are never in the image.
FROM rust:1-bookworm AS build
ARG FEATURES=embedded
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p vakt --no-default-features --features "$FEATURES"

# Run stage: the same Debian release as the build stage, so the binary finds the glibc
# it was linked against. SQLite is compiled into the binary; no other libraries needed.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates openssl \
    && rm -rf /var/lib/apt/lists/*

# A fixed, unprivileged user: the process needs no root, and a fixed uid lets operators
# give it a host directory to write to.
RUN groupadd --system --gid 10001 vakt \
    && useradd --system --uid 10001 --gid vakt --home-dir /var/lib/vakt --shell /usr/sbin/nologin vakt \
    && mkdir -p /var/lib/vakt \
    && chown vakt:vakt /var/lib/vakt

COPY --from=build /src/target/release/vakt /usr/local/bin/vakt
# The certificate step of docker-compose.yml (`certs`), with this image's openssl.
COPY deploy/certs/make-certs.sh /usr/local/share/vakt/make-certs.sh

# Inside a container the defaults (127.0.0.1) would be unreachable through a published
# port, so listen on every interface. The data directory holds the SQLite database
# when no VAKT_DATABASE_URL is set; the working directory is where `vakt.toml` is read
# from (or set VAKT_CONFIG).
ENV VAKT_DATA_DIR=/var/lib/vakt \
    VAKT_HTTP_ADDR=0.0.0.0:8080 \
    VAKT_MQTT_LISTEN=0.0.0.0:1883
VOLUME /var/lib/vakt
WORKDIR /var/lib/vakt
USER vakt

# 8080: API, console, /healthz, /readyz, /metrics. 1883: the embedded MQTT broker (only
# when VAKT_MQTT_URL is not set).
EXPOSE 8080 1883

# `vakt health` asks the instance's /readyz (on VAKT_METRICS_ADDR when set): healthy once
# it can take alarms in.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=6 CMD ["vakt", "health"]

ENTRYPOINT ["vakt"]
CMD ["serve"]
