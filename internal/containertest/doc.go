// Package containertest runs the Postern image the way docs/deploy.md does — read-only root file system, tmpfs
// /tmp, a fresh volume at /var/lib/postern, the configuration mounted read-only, secrets as files — against the
// demo's dev IdP and mail server, started by the test outside the container, and checks it through the port.
//
// The test is behind the build tag container and drives Podman (Docker is not on this machine kind).
// scripts/container-test builds the shipped Dockerfile, then runs the test with POSTERN_CONTAINER_IMAGE naming the
// image, in a network namespace of its own:
//
//	scripts/container-test
package containertest
