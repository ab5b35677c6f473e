#!/bin/sh
# Install what building and running the vmmu conformance kernel needs, on
# Debian 12 (apt-get). Idempotent: installs only packages whose tools are
# missing. Run as root (or with sudo available).
#   gcc, ld, objcopy, make  -> build (no multilib needed: the kernel uses no libc)
#   qemu-system-x86_64      -> run (QEMU 7.2 in Debian 12; BIOS comes with it)
#   timeout, od             -> run-batch.sh (coreutils, always present)
#   python3                 -> selftest/ only
set -eu
need=""
command -v gcc >/dev/null 2>&1 || need="$need gcc"
command -v ld >/dev/null 2>&1 && command -v objcopy >/dev/null 2>&1 || need="$need binutils"
command -v make >/dev/null 2>&1 || need="$need make"
command -v qemu-system-x86_64 >/dev/null 2>&1 || need="$need qemu-system-x86"
command -v python3 >/dev/null 2>&1 || need="$need python3"
if [ -z "$need" ]; then
	echo "install-deps: all dependencies present"
	exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "install-deps: installing$need"
$SUDO apt-get update
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $need
