# The wasmlet node installer image (ghcr.io/wasmlet/installer:latest in
# installer-daemonset.yaml). It only carries the files; the DaemonSet copies them to the node
# and runs deploy/install.sh there through nsenter.
#
# Build, from the repository root, on a machine of the nodes' architecture and with a glibc no
# newer than theirs (Debian 12 here; the binaries link the Swift runtime statically, glibc and
# libsystemd dynamically):
#   scripts/build-release.sh      # the three binaries, static Swift stdlib, into .build/release
#   docker build -f deploy/kubernetes/installer.Dockerfile -t ghcr.io/wasmlet/installer:latest .
#   docker push ghcr.io/wasmlet/installer:latest
# Without a registry, load it on each node instead:
#   docker save ghcr.io/wasmlet/installer:latest | ctr -n k8s.io image import -
# The build context is the whole checkout: build from a clean clone (or add a .dockerignore)
# so that the .build*/ directories are not sent to docker.

FROM debian:12-slim

# nsenter (util-linux) and coreutils are in the base image already; nothing else is needed:
# install.sh runs in the host's namespaces with the host's own tools.
RUN test -x /usr/bin/nsenter

# Same layout as the checkout, so install.sh finds ../systemd and ./containerd next to itself.
COPY deploy/install.sh /payload/deploy/install.sh
COPY deploy/containerd/config-1.x.toml deploy/containerd/config-2.x.toml /payload/deploy/containerd/
COPY systemd/wasmletd.service systemd/wasmletd.socket systemd/wasmlet.sysusers.conf /payload/systemd/
COPY .build/release/wasmletd .build/release/wasmletctl .build/release/containerd-shim-wasmlet-v1 /payload/bin/

# Not run directly: the DaemonSet's command copies /payload to the node and runs it there.
CMD ["/bin/sh", "-c", "echo 'run through deploy/kubernetes/installer-daemonset.yaml'; ls -R /payload"]
