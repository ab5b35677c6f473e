#!/usr/bin/env bash
# CI step for the conformance suite: install QEMU and the kernel's build tools when
# missing (Debian), build the kernel, run the default suite. Its last line is the
# runner's "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
if ! conformance/kernel/install-deps.sh >&2; then
  echo "conformance: could not install qemu-system-x86 and the kernel's build tools" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
exec npm run --silent conformance
