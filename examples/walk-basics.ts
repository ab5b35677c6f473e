/**
 * Build 4-level page tables in a small guest, translate a few addresses, and print
 * each walk level by level. Run: npx tsx examples/walk-basics.ts
 */
import {
  ACCESS_USER,
  ACCESS_WRITE,
  bumpAllocator,
  CpuRole,
  cpuModel,
  cpuWalker,
  describeWalk,
  GuestPhysical,
  HostMemory,
  Memslots,
  PageTableBuilder,
  Walk,
  x86Leaf,
} from "../src/index.js";

// 64 MiB of guest RAM at guest-physical 0, backed by host memory on first touch.
const physical = new GuestPhysical(new Memslots(), new HostMemory(128 << 20));
physical.memslots.add({ id: 0, baseGfn: 0, pages: 16384, hvaPage: 0x40000 });

// A 64-bit CPU: CR0.PG|WP|PE, CR4.PAE, EFER.LME|LMA|NXE.
const role = CpuRole.from({ cr0: 0x80010001n, cr4: 0x20n, efer: 0xd00n, cpl: 3 }, cpuModel("qemu-max"));
const tables = new PageTableBuilder(physical, role.format!, bumpAllocator(physical, 0x100, 256));
tables.map(0x400000n, 0x1000000, 4096, x86Leaf({ user: true, writable: false }));
tables.map(0x600000n, 0x1200000, 2 << 20, x86Leaf({ user: true, noExecute: true }));

const walker = cpuWalker(physical, role, tables.cr3);
const w = new Walk(); // one record, reused: the walk allocates nothing

for (const [va, access] of [
  [0x400123n, ACCESS_USER],
  [0x600456n, ACCESS_USER | ACCESS_WRITE],
  [0x400123n, ACCESS_USER | ACCESS_WRITE],
  [0x800000n, ACCESS_USER],
] as const) {
  walker.walk(Number(va >> 32n), Number(va & 0xffffffffn), access, w);
  const t = describeWalk(w);
  const what = t.ok
    ? `→ ${t.physical!.toString(16)} (${t.pageSize! / 1024} KiB page)`
    : `→ ${t.fault!.kind} error code ${t.fault!.errorCode.toString(16)} (${t.fault!.reason})`;
  console.log(`${va.toString(16)} ${access & ACCESS_WRITE ? "write" : "read"} ${what}`);
  for (const p of t.path)
    console.log(
      `   L${p.level} @${p.entryAddress.toString(16)}: ${p.before.toString(16)} → ${p.after.toString(16)}`,
    );
}
