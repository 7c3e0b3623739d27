# syntax=docker/dockerfile:1.7
#
# mcp-pep sidecar image: a static-ish Rust binary (glibc, libm, libgcc_s: dynamic) on
# distroless/cc (glibc + CA certificates, no shell, no package manager), UID 65532.
#
#   docker build -t ghcr.io/mcp-pep/mcp-pep:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ) .
#
# The builder is Debian 12 (bookworm) like the runtime, so the binary never needs a newer
# glibc (2.36) than the runtime has. image/build-oci.sh builds the same runtime filesystem
# and config without a daemon (tests/image/run.sh).

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
# The cargo profile to build with ([profile.image] in Cargo.toml: release without debug
# info and symbols, thin LTO, one codegen unit); its directory under target/ is its name.
ARG PROFILE=image
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
COPY policies ./policies
COPY src ./src
# aws-lc-sys and mimalloc compile C: the rust image's gcc is enough (no cmake needed).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --profile "${PROFILE}" --locked --bin mcp-pep \
 && install -D -m 0755 "target/${PROFILE}/mcp-pep" /out/mcp-pep \
 && /out/mcp-pep --version

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG SOURCE=https://github.com/mcp-pep/mcp-pep
LABEL org.opencontainers.image.title="mcp-pep" \
      org.opencontainers.image.description="Policy-enforcing reverse proxy (PEP) for the Model Context Protocol" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.url="${SOURCE}" \
      org.opencontainers.image.vendor="mcp-pep" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=build --chown=0:0 --chmod=0755 /out/mcp-pep /usr/local/bin/mcp-pep
# distroless :nonroot already runs as 65532; say it numerically so that Kubernetes'
# runAsNonRoot can verify it without a runAsUser.
USER 65532:65532
WORKDIR /home/nonroot
ENTRYPOINT ["/usr/local/bin/mcp-pep"]
