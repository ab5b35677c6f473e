/**
 * The "QEMU" ELF note (type 0) that `dump-guest-memory` writes for each CPU, holding
 * `QEMUCPUState` (target/i386/arch_dump.c). Notes come in CPU order.
 *
 * ```
 *  offset  field                          offset  field
 *       0  u32 version (1)                   152  QEMUCPUSegment cs, ds, es, fs, gs, ss,
 *       4  u32 size (of the struct)                ldt, tr, gdt, idt (10 × 24 bytes)
 *       8  u64 rax rbx rcx rdx rsi rdi       392  u64 cr[5] (cr0 .. cr4)
 *          rsp rbp r8 .. r15 rip rflags      432  u64 kernel_gs_base (newer QEMU; present when size >= 440)
 *  QEMUCPUSegment: u32 selector, u32 limit, u32 flags, u32 pad, u64 base
 * ```
 * EFER is not part of the note (QEMU 7.2), nor are PKRU and the other MSRs.
 */

import { DumpError, type ElfNote } from "./elf.js";

/** A segment register as QEMU caches it; `flags` holds descriptor bits 8..23 in place (L = bit 21). */
export interface QemuSegment {
  readonly selector: number;
  readonly limit: number;
  readonly flags: number;
  readonly base: bigint;
}

/** One CPU's registers from its QEMU note. 64-bit values are bigints. */
export interface QemuCpuState {
  /** CPU index (order of the QEMU notes in the file). */
  readonly index: number;
  readonly version: number;
  /** `size` field: bytes of QEMUCPUState the writer had. */
  readonly size: number;
  readonly rax: bigint;
  readonly rbx: bigint;
  readonly rcx: bigint;
  readonly rdx: bigint;
  readonly rsi: bigint;
  readonly rdi: bigint;
  readonly rsp: bigint;
  readonly rbp: bigint;
  readonly r8: bigint;
  readonly r9: bigint;
  readonly r10: bigint;
  readonly r11: bigint;
  readonly r12: bigint;
  readonly r13: bigint;
  readonly r14: bigint;
  readonly r15: bigint;
  readonly rip: bigint;
  readonly rflags: bigint;
  readonly cs: QemuSegment;
  readonly ds: QemuSegment;
  readonly es: QemuSegment;
  readonly fs: QemuSegment;
  readonly gs: QemuSegment;
  readonly ss: QemuSegment;
  readonly ldt: QemuSegment;
  readonly tr: QemuSegment;
  readonly gdt: QemuSegment;
  readonly idt: QemuSegment;
  readonly cr0: bigint;
  readonly cr2: bigint;
  readonly cr3: bigint;
  readonly cr4: bigint;
  /** IA32_KERNEL_GS_BASE, when the writer's struct has it (size >= 440). */
  readonly kernelGsBase?: bigint;
}

export const QEMU_NOTE_NAME = "QEMU";
/** Size of QEMUCPUState version 1 without optional fields. */
export const QEMU_CPU_STATE_SIZE = 432;
/** CS flags bit 21: a 64-bit code segment (long mode, not compatibility mode). */
export const SEG_FLAGS_L = 1 << 21;

export const GPR_NAMES = [
  "rax",
  "rbx",
  "rcx",
  "rdx",
  "rsi",
  "rdi",
  "rsp",
  "rbp",
  "r8",
  "r9",
  "r10",
  "r11",
  "r12",
  "r13",
  "r14",
  "r15",
  "rip",
  "rflags",
] as const;
export const SEGMENT_NAMES = ["cs", "ds", "es", "fs", "gs", "ss", "ldt", "tr", "gdt", "idt"] as const;

/** Decodes every QEMU note among `notes`, in order (CPU 0 first). */
export function qemuCpuStates(notes: readonly ElfNote[]): QemuCpuState[] {
  const out: QemuCpuState[] = [];
  for (const n of notes) {
    if (n.name !== QEMU_NOTE_NAME || n.type !== 0) continue;
    out.push(decodeQemuCpuState(n.desc, out.length));
  }
  return out;
}

/** Decodes one QEMUCPUState; throws a DumpError if it is too short or of an unknown version. */
export function decodeQemuCpuState(desc: Uint8Array, index: number): QemuCpuState {
  const where = `QEMU note of CPU ${index}`;
  if (desc.length < 8) throw new DumpError(`${where}: ${desc.length} bytes, too short for QEMUCPUState`);
  const v = new DataView(desc.buffer, desc.byteOffset, desc.byteLength);
  const version = v.getUint32(0, true);
  const size = v.getUint32(4, true);
  if (version !== 1) throw new DumpError(`${where}: unsupported QEMUCPUState version ${version} (known: 1)`);
  if (size < QEMU_CPU_STATE_SIZE || size > desc.length)
    throw new DumpError(
      `${where}: size field ${size} is not between ${QEMU_CPU_STATE_SIZE} and the note's ${desc.length} bytes`,
    );
  const q = (at: number) => v.getBigUint64(at, true);
  const regs: Record<string, bigint> = {};
  GPR_NAMES.forEach((name, i) => {
    regs[name] = q(8 + i * 8);
  });
  const segs: Record<string, QemuSegment> = {};
  SEGMENT_NAMES.forEach((name, i) => {
    const b = 152 + i * 24;
    segs[name] = Object.freeze({
      selector: v.getUint32(b, true),
      limit: v.getUint32(b + 4, true),
      flags: v.getUint32(b + 8, true),
      base: q(b + 16),
    });
  });
  const state = {
    index,
    version,
    size,
    ...regs,
    ...segs,
    cr0: q(392),
    cr2: q(408),
    cr3: q(416),
    cr4: q(424),
    ...(size >= 440 ? { kernelGsBase: q(432) } : {}),
  } as QemuCpuState;
  return Object.freeze(state);
}
