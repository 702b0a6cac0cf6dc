# syntax=docker/dockerfile:1
# Multi-stage build: a static, pure-Go binary (SQLite is modernc.org/sqlite, no cgo) on a distroless base that has
# no shell and runs as a non-root user. The root file system can be mounted read-only: Postern writes only to
# /var/lib/postern (storage.path).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -tags nodemo -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/postern ./cmd/postern
# The data directory, made here because distroless has no shell to run mkdir. Docker gives a new named volume the
# owner and mode of the image's directory at the mount point, or root:root 0755 when the image has none, which the
# non-root user cannot write: the first start would fail to create postern.db. (Podman chowns new volumes to the
# container's user either way, which hides this.)
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/postern /usr/local/bin/postern
COPY --from=build --chown=65532:65532 /out/data /var/lib/postern
USER nonroot:nonroot
VOLUME ["/var/lib/postern"]
EXPOSE 8080
# The binary checks itself: distroless has no curl or shell.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s CMD ["/usr/local/bin/postern", "healthcheck", "-url", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/postern"]
CMD ["serve", "-config", "/etc/postern/config.yml"]
