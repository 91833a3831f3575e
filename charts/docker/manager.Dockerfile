# syntax=docker/dockerfile:1
# The arc-rs manager image: /manager (the controller) and /ghalistener (the listener), because
# the controller starts listener pods from its own image (CONTROLLER_MANAGER_CONTAINER_IMAGE),
# as ARC does. Static musl binaries on distroless/static, running as UID 65532.
#
# Build from the repository root:
#   docker build -f charts/docker/manager.Dockerfile -t ghcr.io/arc-rs/gha-runner-scale-set-controller:0.14.2 .
# (Not buildable on the project's development machines, which have no container engine.)

ARG RUST_VERSION=1.89

FROM rust:${RUST_VERSION}-alpine AS build
ARG TARGETARCH
RUN apk add --no-cache musl-dev cmake clang perl make
WORKDIR /src
COPY . .
RUN case "$TARGETARCH" in \
      amd64) echo x86_64-unknown-linux-musl > /target ;; \
      arm64) echo aarch64-unknown-linux-musl > /target ;; \
      *) echo "unsupported TARGETARCH=$TARGETARCH" >&2; exit 1 ;; \
    esac \
 && rustup target add "$(cat /target)" \
 && cargo build --release --locked --target "$(cat /target)" -p manager -p listener \
 && mkdir /out \
 && cp "target/$(cat /target)/release/manager" /out/manager \
 && cp "target/$(cat /target)/release/listener" /out/ghalistener

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/manager /manager
COPY --from=build /out/ghalistener /ghalistener
USER 65532:65532
ENTRYPOINT ["/manager"]
