#!/bin/sh
# Run one case batch on QEMU.
#   run-batch.sh KERNEL BATCH OUT
# KERNEL: a kernel image, or the build directory (then kernel32.elf is used
#         for modes 0/1 and kernel64.elf for modes 2/3, from the batch header).
# OUT:    the debug-console output file (see FORMAT.md).
# Exit status: 0 = batch completed (QEMU exited with 33 via isa-debug-exit);
#   2 = kernel reported ERR (QEMU status 35); 3 = QEMU stopped early (triple
#   fault or crash; OUT holds the lines written so far); 124 = timeout;
#   64 = usage error. Environment: VMMU_QEMU (default qemu-system-x86_64),
#   VMMU_TIMEOUT seconds (default 120).
set -u
if [ $# -ne 3 ]; then
	echo "usage: $0 KERNEL|BUILD_DIR BATCH OUT" >&2
	exit 64
fi
kernel=$1 batch=$2 out=$3
[ -r "$batch" ] || { echo "$0: cannot read batch $batch" >&2; exit 64; }
if [ -d "$kernel" ]; then
	mode=$(od -An -tu4 -j12 -N4 "$batch" | tr -d ' ')
	case $mode in
	0|1) kernel=$kernel/kernel32.elf ;;
	2|3) kernel=$kernel/kernel64.elf ;;
	*) echo "$0: bad mode '$mode' in $batch" >&2; exit 64 ;;
	esac
fi
[ -r "$kernel" ] || { echo "$0: cannot read kernel $kernel" >&2; exit 64; }
rm -f "$out"
timeout "${VMMU_TIMEOUT:-120}" "${VMMU_QEMU:-qemu-system-x86_64}" \
	-accel tcg -cpu max -m 256M -nographic -no-reboot -monitor none -serial none \
	-display none -nodefaults \
	-kernel "$kernel" \
	-device loader,file="$batch",addr=0x04000000,force-raw=on \
	-debugcon file:"$out" \
	-device isa-debug-exit,iobase=0xf4,iosize=0x04
rc=$?
case $rc in
33) exit 0 ;;
35) exit 2 ;;
124) echo "$0: timeout" >&2; exit 124 ;;
*) echo "$0: QEMU exited with status $rc before END (triple fault?)" >&2; exit 3 ;;
esac
