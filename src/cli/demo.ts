/**
 * `vmmu demo` (what `npm start` runs): page tables in every paging mode, built in an
 * in-process guest (HostMemory + Memslots + GuestPhysical + PageTableBuilder), and a
 * few walks printed level by level: successes, a not-present #PF, a protection #PF with
 * its error code, a reserved-bit #PF, an EPT violation with its exit qualification and
 * an EPT misconfiguration.
 */

import { ACCESS_LINEAR_VALID, ACCESS_USER, type AccessKind, accessKindBits } from "../arch/access.js";
import { CpuRole, cpuModel } from "../arch/cpu.js";
import type { PagingFormat } from "../arch/format.js";
import { hi32, lo32 } from "../arch/u64.js";
import { GuestPhysical } from "../mem/guest-physical.js";
import { HostMemory } from "../mem/host-memory.js";
import { Memslots } from "../mem/memslots.js";
import { bumpAllocator, eptLeaf, PageTableBuilder, x86Leaf } from "../walk/builder.js";
import { cpuWalker, eptWalker, nptWalker } from "../walk/contexts.js";
import { describeWalk } from "../walk/translation.js";
import { Walk } from "../walk/walk.js";
import type { GuestWalker } from "../walk/walker.js";
import { pathLines, resultLine } from "./explain.js";
import type { Io } from "./io.js";
import { hx } from "./registers.js";

/** 64 MiB of guest RAM at guest-physical 0. */
const GUEST_PAGES = 16384;

interface Tally {
  walks: number;
  ok: number;
  faults: Map<string, number>;
  formats: string[];
}

export function runDemo(io: Io): number {
  const out = (s = "") => io.stdout.write(`${s}\n`);
  const physical = new GuestPhysical(new Memslots(), new HostMemory(GUEST_PAGES * 4096));
  physical.memslots.add({ id: 0, baseGfn: 0, pages: GUEST_PAGES, hvaPage: 0x10000 });
  const tally: Tally = { walks: 0, ok: 0, faults: new Map(), formats: [] };
  let nextTableGfn = 0x100;
  const allocator = () => {
    const a = bumpAllocator(physical, nextTableGfn, 32);
    nextTableGfn += 32;
    return a;
  };

  const walk = (walker: GuestWalker, address: bigint, access: number, what: string) => {
    const w = new Walk();
    walker.translate(hi32(address), lo32(address), access, w);
    const t = describeWalk(w);
    tally.walks++;
    if (t.ok) tally.ok++;
    else {
      const key =
        t.fault!.kind === "page-fault" ? `#PF ${t.fault!.reason}` : t.fault!.kind.replace("ept-", "EPT ");
      tally.faults.set(key, (tally.faults.get(key) ?? 0) + 1);
    }
    const f: PagingFormat = walker.format;
    out(`  ${what}`);
    out(`  ${resultLine(f, t, 0)}`);
    for (const l of pathLines(f, t.path)) out(l);
  };

  const x86 = (title: string, regs: { cr0: bigint; cr4: bigint; efer: bigint }, cpu: string) => {
    const role = CpuRole.from(regs, cpuModel(cpu));
    const b = new PageTableBuilder(physical, role.format!, allocator());
    tally.formats.push(role.format!.name);
    return {
      b,
      role,
      header: () =>
        out(
          `== ${title}: CR0 ${hx(regs.cr0)}, CR4 ${hx(regs.cr4)}, EFER ${hx(regs.efer)}, CR3 ${hx(b.cr3)} (${cpu})`,
        ),
      walker: () => cpuWalker(physical, role, b.cr3),
    };
  };
  const acc = (role: CpuRole, kind: AccessKind) => role.accessFor(kind);

  out("vmmu demo: guest page-table walks in every x86 paging mode, EPT and NPT");
  out("(the walker's pure walk: no accessed/dirty flags are set; addresses in hex)");
  out();

  {
    const s = x86(
      "32-bit paging with PSE and PSE-36",
      { cr0: 0x80010011n, cr4: 0x10n, efer: 0n },
      "qemu-max",
    );
    s.b.map(0x00400000n, 0x00123000, 4096, x86Leaf({ user: true }));
    s.b.map(0x00800000n, 0x1_0040_0000, 4 << 20, x86Leaf({ user: true, writable: false }));
    s.header();
    const w = s.walker();
    walk(w, 0x00400abcn, acc(s.role, "read"), "read 0x400abc: a 4 KiB page");
    walk(
      w,
      0x00812345n,
      acc(s.role, "read"),
      "read 0x812345: a 4 MiB page above 4 GiB (PSE-36: PDE bits 20:13 = address bits 39:32)",
    );
    out();
  }
  {
    const s = x86("PAE paging", { cr0: 0x80010011n, cr4: 0x20n, efer: 0x800n }, "qemu-max");
    s.b.map(0xc0000000n, 0x00a00000, 2 << 20, x86Leaf({ noExecute: true }));
    s.header();
    const w = s.walker();
    walk(w, 0xc0012345n, acc(s.role, "write"), "write 0xc0012345: a 2 MiB page");
    walk(w, 0x00400000n, acc(s.role, "read"), "read 0x400000: PDPTE 0 is not present");
    out();
  }
  {
    const s = x86("4-level paging", { cr0: 0x80010011n, cr4: 0x20n, efer: 0xd00n }, "qemu-max");
    s.b.map(0xffff888000000000n, 0, 1 << 30, x86Leaf({ global: true, noExecute: true }));
    s.b.map(0x00401000n, 0x00200000, 4096, x86Leaf({ writable: false }));
    s.header();
    const w = s.walker();
    walk(
      w,
      0xffff888012345678n,
      acc(s.role, "read"),
      "read 0xffff888012345678: a 1 GiB page (a kernel direct map)",
    );
    walk(
      w,
      0x00401008n,
      accessKindBits("write") | ACCESS_USER,
      "user write (CPL 3) to 0x401008: a supervisor read-only page",
    );
    out();
  }
  {
    const s = x86("5-level paging", { cr0: 0x80010011n, cr4: 0x1020n, efer: 0xd00n }, "qemu-max");
    s.b.map(0x00ff800000001000n, 0x00300000, 4096, x86Leaf({ user: true }));
    s.b.map(0x00600000n, 0x00400000, 2 << 20, x86Leaf());
    // Bits 20:13 of a 2 MiB PDE are reserved (SDM Table 4-17): set bit 13.
    const pde = s.b.entryAddress(0x00600000n, 2, false);
    const [lo, hi] = s.b.read(pde);
    s.b.write(pde, lo | (1 << 13), hi);
    s.header();
    const w = s.walker();
    walk(
      w,
      0x00ff800000001234n,
      acc(s.role, "read"),
      "read 0xff800000001234: a 57-bit address (PML5 index 255)",
    );
    walk(w, 0x00600000n, acc(s.role, "read"), "read 0x600000: the 2 MiB PDE has reserved bit 13 set");
    out();
  }
  {
    const cpu = cpuModel("bochs-tigerlake");
    const eptp = (root: bigint) => root | (3n << 3n) | 6n; // 4-level walk, write-back
    const probe = eptWalker(physical, eptp(0n), cpu);
    const b = new PageTableBuilder(physical, probe.format, allocator());
    tally.formats.push(probe.format.name);
    b.map(0x00100000n, 0x02000000, 4096, eptLeaf({ read: false, write: false, execute: true }));
    b.map(0x00200000n, 0x02100000, 4096, eptLeaf({ read: false, write: true, execute: false }));
    out(`== EPT (Intel): EPTP ${hx(eptp(b.cr3))}, guest-physical -> host-physical (bochs-tigerlake)`);
    const w = eptWalker(physical, eptp(b.cr3), cpu);
    walk(w, 0x00100040n, accessKindBits("fetch"), "fetch at guest-physical 0x100040: an execute-only page");
    walk(
      w,
      0x00100040n,
      accessKindBits("read") | ACCESS_LINEAR_VALID,
      "read at guest-physical 0x100040, translating a guest linear address: the page is execute-only",
    );
    walk(
      w,
      0x00200000n,
      accessKindBits("write"),
      "write at guest-physical 0x200000: the EPT PTE is write-only (W without R)",
    );
    out();
  }
  {
    const cpu = cpuModel("amd-zen4");
    const probe = nptWalker(physical, 0n, cpu, { levels: 4 });
    const b = new PageTableBuilder(physical, probe.format, allocator());
    tally.formats.push(`NPT ${probe.format.name}`);
    b.map(0x00200000n, 0x03000000, 2 << 20, x86Leaf({ user: true }));
    out(
      `== NPT (AMD): nCR3 ${hx(b.cr3)}, guest-physical -> host-physical (amd-zen4; nested accesses are user accesses)`,
    );
    const w = nptWalker(physical, b.cr3, cpu, { levels: 4 });
    walk(
      w,
      0x00323456n,
      accessKindBits("write") | ACCESS_USER,
      "write at guest-physical 0x323456: a 2 MiB nested page",
    );
    out();
  }

  const faults = [...tally.faults].map(([k, n]) => `${n} ${k}`).join(", ");
  out(
    `Summary: ${tally.walks} walks in ${tally.formats.length} formats (${tally.formats.join(", ")}): ${tally.ok} translated, ${tally.walks - tally.ok} faulted (${faults}).`,
  );
  return 0;
}
