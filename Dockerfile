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

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/postern /usr/local/bin/postern
USER nonroot:nonroot
VOLUME ["/var/lib/postern"]
EXPOSE 8080
# The binary checks itself: distroless has no curl or shell.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s CMD ["/usr/local/bin/postern", "healthcheck", "-url", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/postern"]
CMD ["serve", "-config", "/etc/postern/config.yml"]
