/**
 * `vmmu maps`: every mapping of an address space, by enumerating the page tables
 * (src/dump/mappings.ts), printed in QEMU's `info tlb` / `info mem` formats or as JSON.
 * Output is streamed; tables outside the dump are skipped with a note on stderr.
 */

import { EFER_NXE } from "../arch/x86.js";
import { enumerateMappings, protectionRanges } from "../dump/mappings.js";
import { QEMU_PG_DISABLED, QemuTlbFormatter, qemuMemLine } from "../dump/qemu-monitor.js";
import { BufferedOutput, type Io } from "./io.js";
import { hx } from "./registers.js";
import { loadState, SCHEMA_VERSION } from "./translate.js";

export type MapsFormat = "qemu-tlb" | "qemu-mem" | "json";

export interface MapsOptions {
  dump: string;
  cr0?: bigint;
  cr3?: bigint;
  cr4?: bigint;
  efer?: bigint;
  cpu: string;
  vcpu?: number;
  format: MapsFormat;
}

export async function runMaps(o: MapsOptions, io: Io): Promise<number> {
  const state = loadState(o, io);
  try {
    return await list(o, io, state);
  } finally {
    state.dump.close();
  }
}

async function list(
  o: MapsOptions,
  io: Io,
  { dump, regs, role }: ReturnType<typeof loadState>,
): Promise<number> {
  const out = new BufferedOutput(io.stdout);
  const missing = new Map<number, number>();
  const onMissingTable = (addr: number, level: number) => {
    if (!missing.has(addr)) missing.set(addr, level);
  };
  let reserved = 0;
  let count = 0;

  if (o.format === "json") {
    const nxe = role.mode !== "32bit" && (regs.efer & BigInt(EFER_NXE)) !== 0n;
    const head = {
      schemaVersion: SCHEMA_VERSION,
      command: "maps",
      dump: o.dump,
      cpu: o.cpu,
      mode: role.mode,
      registers: { cr0: hx(regs.cr0), cr3: hx(regs.cr3), cr4: hx(regs.cr4), efer: hx(regs.efer) },
      registerSources: regs.sources,
    };
    const h = JSON.stringify(head);
    out.write(`${h.slice(0, -1)},"mappings":[`);
    for (const m of enumerateMappings(dump.memory, role, regs.cr3, { onMissingTable })) {
      // Built by hand (this runs for every mapping): the fields of docs/CLI.md, in order.
      const lo = m.lo;
      out.write(
        `${count ? "," : ""}\n{"va":"${hexHalves(m.vaHi, m.vaLo)}","pa":"0x${m.physical.toString(16)}","size":${m.pageSize},"level":${m.level},"entryAddress":"0x${m.entryAddress.toString(16)}","entry":"${hexHalves(m.hi, lo)}","writable":${(m.prot & 2) !== 0},"user":${(m.prot & 4) !== 0},"executable":${!(nxe && m.nx)},"global":${(lo & 0x100) !== 0},"accessed":${(lo & 0x20) !== 0},"dirty":${(lo & 0x40) !== 0},"reserved":${m.reserved}}`,
      );
      count++;
      if (m.reserved) reserved++;
      if (out.full) await out.flush();
    }
    const tail = {
      count,
      reservedCount: reserved,
      missingTables: [...missing].map(([a, l]) => ({ address: hx(a), level: l, name: tableName(l) })),
    };
    out.write(`\n],${JSON.stringify(tail).slice(1)}\n`);
  } else if (role.mode === "none") {
    out.write(QEMU_PG_DISABLED);
  } else if (o.format === "qemu-tlb") {
    const f = new QemuTlbFormatter();
    for (const m of enumerateMappings(dump.memory, role, regs.cr3, { onMissingTable })) {
      out.write(f.line(m));
      count++;
      if (m.reserved) reserved++;
      if (out.full) await out.flush();
    }
  } else {
    for (const r of protectionRanges(dump.memory, role, regs.cr3, { onMissingTable })) {
      out.write(qemuMemLine(role.mode, r));
      if (out.full) await out.flush();
    }
  }
  await out.flush();

  if (missing.size > 0) {
    const list = [...missing].slice(0, 10).map(([a, l]) => `${tableName(l)} at ${hx(a)}`);
    io.stderr.write(
      `vmmu: note: ${missing.size} paging structure${missing.size === 1 ? " is" : "s are"} outside the dump's memory and ${missing.size === 1 ? "was" : "were"} skipped: ${list.join(", ")}${missing.size > 10 ? ", ..." : ""}\n`,
    );
  }
  if (reserved > 0)
    io.stderr.write(
      `vmmu: note: ${reserved} mapping${reserved === 1 ? " goes" : "s go"} through entries with reserved bits set for ${o.cpu}; they are listed (QEMU's monitor does not check reserved bits), but an access through them faults (#PF with RSVD)\n`,
    );
  return 0;
}

/** 0x-hex of a 64-bit value given as halves, without leading zeros. */
function hexHalves(hi: number, lo: number): string {
  return hi === 0
    ? `0x${(lo >>> 0).toString(16)}`
    : `0x${(hi >>> 0).toString(16)}${(lo >>> 0).toString(16).padStart(8, "0")}`;
}

/** The name of a paging structure whose entries are at `level`: PT, PD, PDPT, PML4, PML5. */
function tableName(level: number): string {
  return ["", "PT", "PD", "PDPT", "PML4", "PML5"][level] ?? `level-${level} table`;
}
