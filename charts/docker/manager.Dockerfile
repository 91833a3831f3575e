# syntax=docker/dockerfile:1
# The arc-rs manager image: /manager (the controller) and /ghalistener (the listener), because
# the controller starts listener pods from its own image (CONTROLLER_MANAGER_CONTAINER_IMAGE),
# as ARC does. Two binaries, as in ARC's image: a listener pod maps only the listener's code.
# Static musl binaries FROM scratch, running as UID 65532.
#
# The final stage has the layout of the image `cargo xtask images` builds with podman
# (system::images::layout; tests/suites/tests/images.rs checks that the two agree): /manager,
# /ghalistener, the CA bundle at /etc/ssl/certs/ca-certificates.crt (where rustls-native-certs
# looks), /etc/passwd and /etc/group with root and nonroot (65532), an empty /tmp (mode 1777),
# USER 65532:65532, WORKDIR /, ENTRYPOINT ["/manager"]. `cargo xtask images` links glibc
# statically instead of musl; the layout is the same.
#
# Build from the repository root where Docker can pull the rust:alpine build image:
#   docker build -f charts/docker/manager.Dockerfile -t ghcr.io/arc-rs/gha-runner-scale-set-controller:0.14.2 .
# (Not buildable on the project's development machines, which reach no registry; use
# `cargo xtask images` there.)

ARG RUST_VERSION=1.89

FROM rust:${RUST_VERSION}-alpine AS build
ARG TARGETARCH
RUN apk add --no-cache musl-dev cmake clang perl make ca-certificates
WORKDIR /src
COPY . .
RUN case "$TARGETARCH" in \
      amd64) echo x86_64-unknown-linux-musl > /target ;; \
      arm64) echo aarch64-unknown-linux-musl > /target ;; \
      *) echo "unsupported TARGETARCH=$TARGETARCH" >&2; exit 1 ;; \
    esac \
 && rustup target add "$(cat /target)" \
 && cargo build --profile image --locked --target "$(cat /target)" -p manager -p listener \
 && mkdir -p /out/dirs/tmp \
 && chmod 1777 /out/dirs/tmp \
 && printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' > /out/passwd \
 && printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' > /out/group \
 && cp "target/$(cat /target)/image/manager" /out/manager \
 && cp "target/$(cat /target)/image/listener" /out/ghalistener

FROM scratch
# /tmp: a COPY keeps the mode of what a copied directory holds, not of the directory itself.
COPY --from=build /out/dirs/ /
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/passwd /etc/passwd
COPY --from=build /out/group /etc/group
COPY --from=build /out/manager /manager
COPY --from=build /out/ghalistener /ghalistener
USER 65532:65532
WORKDIR /
ENTRYPOINT ["/manager"]
