#!/usr/bin/env bash
# Build the real image from ./Dockerfile with buildah, on a Debian base made here with debootstrap (no Docker daemon
# or image registry needed), then run `expkit --help` and a 1-epoch default training inside it.
#
#   sudo scripts/docker_build.sh            # needs root, buildah and debootstrap: apt-get install -y buildah debootstrap
#
# The FROM line stays as users need it: `buildah bud --from` puts the local base in its place. The base mimics
# python:3.11-slim (Debian bookworm's python3 in a venv at /usr/local/py, first on PATH). pip inside the build sees
# this machine's pip configuration (merged into one read-only /etc/pip.conf), its CA bundle, constraints file,
# find-links folders and file:// indexes, all bind-mounted read-only.
# EXPKIT_DOCKER_WORK (default /var/tmp/expkit-docker) holds the base rootfs and buildah's vfs storage; the base is
# reused when it is already there (EXPKIT_DOCKER_REBASE=1 makes it again).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${EXPKIT_DOCKER_WORK:-/var/tmp/expkit-docker}
base=localhost/expkit-base:bookworm
image=${EXPKIT_IMAGE:-localhost/expkit:dev}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
python=${PYTHON:-python3}

[[ "$(id -u)" == 0 ]] || { echo "error: run as root (buildah with chroot isolation and debootstrap need it)" >&2; exit 2; }
for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing; hint: apt-get install -y buildah debootstrap" >&2; exit 2; }
done
mkdir -p "$work"
bh() { buildah --storage-driver vfs --root "$work/storage" --runroot "$work/run" "$@"; }
step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

# 1. The local base image.
if [[ "${EXPKIT_DOCKER_REBASE:-0}" == 1 ]] || ! bh inspect --type image "$base" >/dev/null 2>&1; then
  step "debootstrap a bookworm base"
  rootfs="$work/rootfs"
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror" >"$work/debootstrap.log"
  chroot "$rootfs" python3 -m venv /usr/local/py
  tar -C "$rootfs" -cf "$work/base.tar" .
  cat >"$work/Containerfile.base" <<'BASE'
FROM scratch
ADD base.tar /
ENV PATH=/usr/local/py/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
CMD ["python3"]
BASE
  bh bud --isolation chroot --quiet -f "$work/Containerfile.base" -t "$base" "$work"
  rm -rf "$rootfs" "$work/base.tar"
fi

# 2. This machine's pip configuration, merged into one file (environment first, as pip ranks it), and every local
#    path it names, to be bind-mounted read-only into the build's RUN steps.
conf="$work/pip.conf"
"$python" - "$conf" >"$work/mounts" <<'PY'
import subprocess, sys
from pathlib import Path

out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True).stdout
values: dict[str, str] = {}
for line in sorted(out.splitlines(), key=lambda ln: ln.startswith(":env:")):  # env values last: they win
    key, _, value = line.partition("=")
    values[key.split(".", 1)[1]] = value.strip().strip("'\"")
Path(sys.argv[1]).write_text("[global]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
paths = set()
for key in ("cert", "constraint", "requirement", "find-links", "index-url", "extra-index-url"):
    for item in values.get(key, "").split():
        path = item.removeprefix("file://")
        if path.startswith("/"):
            # a file:// simple index links to ../../files/...: mount the folder holding it
            paths.add(str(Path(path).parent) if Path(path).name == "simple" else path)
print("\n".join(p for p in sorted(paths) if Path(p).exists()))
PY
mounts=(-v "$conf:/etc/pip.conf:ro")
while read -r path; do [[ -n "$path" ]] && mounts+=(-v "$path:$path:ro"); done <"$work/mounts"

# 3. The image, from the project's Dockerfile and its .dockerignore'd context.
step "buildah bud -> $image"
bh bud --isolation chroot --layers=false --from "$base" "${mounts[@]}" -t "$image" .

# 4. Inside it: the CLI and a 1-epoch default training (scikit-learn's digits, offline).
container=$(bh from "$image")
trap 'bh rm "$container" >/dev/null 2>&1 || true' EXIT
step "user inside the image (not root)"
bh run --isolation chroot "$container" -- id
[[ "$(bh run --isolation chroot "$container" -- id -u)" != 0 ]] || { echo "error: the image runs as root" >&2; exit 1; }
step "expkit --help"
bh run --isolation chroot "$container" -- expkit --help
step "expkit train trainer.epochs=1"
bh run --isolation chroot "$container" -- expkit train trainer.epochs=1
step "done: $image"
bh images "$image"
