import {
  bumpAllocator,
  type CpuFeatures,
  type CpuRegisters,
  CpuRole,
  cpuModel,
  cpuWalker,
  GuestPhysical,
  HostMemory,
  Memslots,
  PageTableBuilder,
  Walk,
} from "../src/index.js";

/** A guest with `mib` MiB of RAM at guest-physical 0 and a table allocator at 1 MiB. */
export function makeGuest(mib = 16) {
  const host = new HostMemory(mib * 2 * 1024 * 1024);
  const physical = new GuestPhysical(new Memslots(2 ** 40), host);
  physical.memslots.add({ id: 0, baseGfn: 0, pages: mib * 256, hvaPage: 0x7f000 });
  const alloc = bumpAllocator(physical, 0x100, 0x100);
  return { host, physical, alloc };
}

export const MODE_REGS: Record<string, CpuRegisters> = {
  "32bit": { cr0: 0x80010001n, cr4: 0x10n },
  pae: { cr0: 0x80010001n, cr4: 0x20n, efer: 0x800n },
  "4level": { cr0: 0x80010001n, cr4: 0x20n, efer: 0xd00n },
  "5level": { cr0: 0x80010001n, cr4: 0x1020n, efer: 0xd00n },
};

/** Builds tables for `mode` with extra register bits, and returns a walker factory. */
export function setup(
  mode: keyof typeof MODE_REGS,
  extra: Partial<CpuRegisters> = {},
  cpu: string | CpuFeatures = "qemu-max",
) {
  const g = makeGuest();
  const features = typeof cpu === "string" ? cpuModel(cpu) : cpu;
  const base = MODE_REGS[mode];
  const regs: CpuRegisters = {
    ...base,
    ...extra,
    cr4: BigInt(base.cr4) | BigInt(extra.cr4 ?? 0n),
    cr0: BigInt(base.cr0) | BigInt(extra.cr0 ?? 0n),
  };
  const role = CpuRole.from(regs, features);
  const tables = new PageTableBuilder(g.physical, role.format!, g.alloc);
  const walker = () => cpuWalker(g.physical, role, tables.cr3);
  return { ...g, role, tables, walker, w: new Walk() };
}

/** Reads the 8-byte (or 4-byte) entry at a physical address as a bigint. */
export function entryAt(physical: GuestPhysical, pa: number, bytes: 4 | 8 = 8): bigint {
  return physical.read(pa, bytes).value;
}

export function va(v: bigint): [number, number] {
  return [Number((v >> 32n) & 0xffffffffn), Number(v & 0xffffffffn)];
}

/**
 * Every field in which two walk records differ, as "field a vs b" (empty when they agree):
 * the summary fields and each step's entry. The walker's fast paths must leave a `Walk`
 * exactly as its general path does, and both the fast-path tests and
 * bench/lib/fast-path-check.ts hold them to it with this.
 */
export function walkDifferences(a: Walk, b: Walk): string[] {
  const fields = [
    "vaHi",
    "vaLo",
    "access",
    "depth",
    "registerMask",
    "missingMask",
    "accessedCount",
    "setDirty",
    "fault",
    "reason",
    "errorCode",
    "faultLevel",
    "address",
    "pageShift",
    "effective",
    "pkey",
  ] as const;
  const out: string[] = [];
  for (const f of fields) if (a[f] !== b[f]) out.push(`${f} ${a[f]} vs ${b[f]}`);
  for (let i = 0; i < Math.max(a.depth, b.depth); i++)
    for (const f of ["level", "entryAddr", "lo", "hi", "newLo", "newHi"] as const)
      if (a[f][i] !== b[f][i]) out.push(`${f}[${i}] ${a[f][i]} vs ${b[f][i]}`);
  return out;
}
