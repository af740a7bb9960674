# worker-controller image: one fully static binary on an empty filesystem.
#
#   docker build -t hiclaw/worker-controller:$(cat VERSION) .
#
# Stage 1 runs ./build.sh on Debian bookworm: it fetches the pinned Debian source packages
# (curl, BearSSL, cJSON, libyaml), verifies them against vendor/deps.lock, builds them with musl
# and links the static binary. Stage 2 is `scratch`: no shell, no libc, no CA store, no
# /etc/passwd — the binary needs none (in-cluster config comes from the mounted ServiceAccount
# files, TLS trust from their ca.crt). test/e2e/test_ops.py runs the binary in an empty chroot
# with only those files to prove it, since CI has no Docker engine to build this file.

FROM debian:bookworm AS build
WORKDIR /src
# Dependencies first: this layer stays cached until the lock file or build.sh changes.
COPY build.sh VERSION ./
COPY vendor/ vendor/
RUN ./build.sh deps
COPY . .
RUN ./build.sh && ./worker-controller version && install -D -m 0555 worker-controller /out/worker-controller

FROM scratch
COPY --from=build /out/worker-controller /worker-controller
# The chart's runAsUser/runAsGroup; no home, no shell: nothing else to set up.
USER 65532:65532
ENTRYPOINT ["/worker-controller"]
CMD ["run"]
