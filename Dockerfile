# syntax=docker/dockerfile:1
#
# Images for the ext_authz server and the two demo programs. One build stage
# compiles all three binaries (they share the module cache and most packages);
# one small final stage per binary:
#
#   docker build --target extauthz     -t extauthz .      # the default target
#   docker build --target demo-idp     -t extauthz-demo-idp .
#   docker build --target demo-backend -t extauthz-demo-backend .
#
# envoy/docker-compose.yaml builds all three. The cache mounts need BuildKit
# (the default builder of current Docker; for docker-compose 1.x set
# DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1).

# The toolchain of go.mod's "go" line, exactly, as the tests build with
# (deploy/manifests/image_test.go checks the two agree); the image's
# GOTOOLCHAIN=local keeps the build from downloading another.
ARG GO_VERSION=1.26.8

# Build on the build machine's own platform and cross-compile (pure Go, no
# cgo), so multi-platform builds do not run the compiler under emulation.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=bind,source=go.mod,target=go.mod \
    --mount=type=bind,source=go.sum,target=go.sum \
    go mod download
ARG TARGETOS
ARG TARGETARCH
# CGO_ENABLED=0: static binaries that run on distroless/static (no libc).
# -trimpath and -buildvcs=false: no build-machine paths or VCS state in the
# binary (.git is not in the build context anyway); -s -w: no symbol table or
# DWARF, which roughly halves the size.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    --mount=type=bind,target=. \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/ \
        ./cmd/extauthz ./cmd/demo-idp ./cmd/demo-backend

# distroless/static: CA certificates, tzdata and /etc/passwd with the nonroot
# user, nothing else (no shell, no package manager): about 2 MB plus the
# binary. The numeric USER lets Kubernetes' runAsNonRoot verify it.
FROM gcr.io/distroless/static-debian12:nonroot AS demo-idp
COPY --from=build /out/demo-idp /usr/local/bin/demo-idp
USER 65532:65532
EXPOSE 9000
ENTRYPOINT ["/usr/local/bin/demo-idp"]

FROM gcr.io/distroless/static-debian12:nonroot AS demo-backend
COPY --from=build /out/demo-backend /usr/local/bin/demo-backend
USER 65532:65532
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/demo-backend"]

# Last, so that a plain `docker build .` produces the ext_authz server.
# 9191 gRPC ext_authz, 9192 HTTP forward auth, 9090 admin (/healthz, /readyz,
# /metrics). Configure with AUTHZ_* environment variables or --config.
FROM gcr.io/distroless/static-debian12:nonroot AS extauthz
COPY --from=build /out/extauthz /usr/local/bin/extauthz
USER 65532:65532
EXPOSE 9191 9192 9090
ENTRYPOINT ["/usr/local/bin/extauthz"]
