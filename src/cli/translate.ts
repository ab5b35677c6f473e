/**
 * `vmmu translate`: linear addresses through a dump's page tables. The walk is the
 * library's pure walk (`GuestWalker.translate`): no accessed/dirty flag is set, nothing
 * is written, and the dump file is only read.
 */

import type { AccessKind } from "../arch/access.js";
import type { CpuRole } from "../arch/cpu.js";
import { hi32, lo32 } from "../arch/u64.js";
import { type GuestDump, openDump } from "../dump/dump.js";
import { DumpError } from "../dump/elf.js";
import { pageTableRoot } from "../dump/mappings.js";
import { cpuWalker } from "../walk/contexts.js";
import { describeWalk, type Translation } from "../walk/translation.js";
import { Walk } from "../walk/walk.js";
import { entryFlags, levelName, pathLines, resultLine } from "./explain.js";
import { type Io, UsageError } from "./io.js";
import { features, hx, parseAddress, type Registers, resolveRegisters, roleFor } from "./registers.js";

export const SCHEMA_VERSION = 1;

export interface TranslateOptions {
  dump: string;
  cr0?: bigint;
  cr3?: bigint;
  cr4?: bigint;
  efer?: bigint;
  cpl: number;
  access: AccessKind;
  pkru?: number;
  pkrs?: number;
  ac?: boolean;
  cpu: string;
  vcpu?: number;
  explain?: boolean;
  json?: boolean;
}

/** Opens the dump and works out role and registers; shared with `maps`. The caller closes the dump. */
export function loadState(
  o: Pick<TranslateOptions, "dump" | "cr0" | "cr3" | "cr4" | "efer" | "cpu" | "vcpu">,
  io: Io,
  extra: { cpl?: number; ac?: boolean; pkru?: number; pkrs?: number } = {},
): { dump: GuestDump; regs: Registers; role: CpuRole } {
  const cpu = features(o.cpu);
  const dump = openDump(o.dump);
  try {
    const regs = resolveRegisters(o, dump);
    for (const n of regs.notes) io.stderr.write(`vmmu: note: ${n}\n`);
    const role = roleFor(regs, cpu, extra);
    if (role.mode !== "none") {
      const root = pageTableRoot(role, regs.cr3);
      if (!dump.memory.contains(root))
        throw new DumpError(
          `CR3 ${hx(regs.cr3)} points outside the dump's memory: its ${role.mode === "pae" ? "PDPT" : "root table"} at guest-physical ${hx(root)} is not in any PT_LOAD segment (the dump holds ${describeRanges(dump)})`,
        );
    }
    return { dump, regs, role };
  } catch (e) {
    dump.close();
    throw e;
  }
}

function describeRanges(dump: GuestDump): string {
  const r = dump.memory.ranges;
  const shown = r.slice(0, 6).map(([a, b]) => `${hx(a)}-${hx(b - 1)}`);
  return shown.join(", ") + (r.length > 6 ? `, and ${r.length - 6} more ranges` : "");
}

export async function runTranslate(vaArgs: string[], o: TranslateOptions, io: Io): Promise<number> {
  const vas = vaArgs.map(parseAddress);
  const { regs, role, dump } = loadState(o, io, { cpl: o.cpl, ac: o.ac, pkru: o.pkru, pkrs: o.pkrs });
  try {
    return report(vas, o, io, regs, role, dump);
  } finally {
    dump.close();
  }
}

function report(
  vas: bigint[],
  o: TranslateOptions,
  io: Io,
  regs: Registers,
  role: CpuRole,
  dump: GuestDump,
): number {
  const results: Translation[] = [];
  if (role.mode === "none") {
    io.stderr.write("vmmu: note: paging is off (CR0.PG=0): linear addresses are physical addresses\n");
    for (const va of vas) {
      if (va >> 32n !== 0n) throw new UsageError(`address ${hx(va)} exceeds 32 bits with paging off`);
      results.push({ ok: true, address: va, physical: va, pageSize: 4096, path: [] });
    }
  } else {
    const wide = role.mode === "4level" || role.mode === "5level";
    for (const va of vas)
      if (!wide && va >> 32n !== 0n)
        throw new UsageError(
          `address ${hx(va)} exceeds 32 bits (${role.mode === "pae" ? "PAE" : "32-bit"} paging)`,
        );
    const walker = cpuWalker(dump.memory, role, regs.cr3);
    const access = role.accessFor(o.access);
    const w = new Walk();
    for (const va of vas) {
      walker.translate(hi32(va), lo32(va), access, w);
      results.push(describeWalk(w));
    }
  }
  const format = role.format;
  if (o.json) {
    const doc = {
      schemaVersion: SCHEMA_VERSION,
      command: "translate",
      dump: o.dump,
      cpu: o.cpu,
      mode: role.mode,
      registers: { cr0: hx(regs.cr0), cr3: hx(regs.cr3), cr4: hx(regs.cr4), efer: hx(regs.efer) },
      registerSources: regs.sources,
      access: o.access,
      cpl: o.cpl,
      ac: o.ac ?? false,
      pkru: hx(o.pkru ?? 0),
      pkrs: hx(o.pkrs ?? 0),
      results: results.map((t) => ({
        address: hx(t.address),
        ok: t.ok,
        ...(t.ok
          ? {
              physical: hx(t.physical!),
              pageSize: t.pageSize,
              ...(format
                ? {
                    writable: (t.effective! & 1) !== 0,
                    user: (t.effective! & 2) !== 0,
                    executable: (t.effective! & 4) !== 0,
                    pkey: t.pkey,
                  }
                : {}),
            }
          : {
              fault: {
                kind: t.fault!.kind,
                ...(t.fault!.vector !== undefined ? { vector: t.fault!.vector } : {}),
                errorCode: hx(t.fault!.errorCode),
                reason: t.fault!.reason,
                level: t.fault!.level,
                levelName: format && t.fault!.level > 0 ? levelName(format, t.fault!.level) : null,
              },
            }),
        path: t.path.map((p) => ({
          level: p.level,
          name: format ? levelName(format, p.level) : "",
          entryAddress: hx(p.entryAddress),
          value: p.missing ? null : hx(p.before),
          fromRegister: p.fromRegister,
          missing: p.missing,
          flags: format && !p.missing ? entryFlags(format, p.level, p.before) : [],
        })),
      })),
    };
    io.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
  } else {
    const width = role.mode === "4level" || role.mode === "5level" ? 16 : 8;
    if (o.explain)
      io.stdout.write(
        `${format ? `${format.name} paging` : "paging off"}, CR3 ${hx(regs.cr3)}, ${o.access} at CPL ${o.cpl}\n`,
      );
    for (const t of results) {
      if (format) io.stdout.write(`${resultLine(format, t, width)}\n`);
      else
        io.stdout.write(
          `0x${t.address.toString(16).padStart(8, "0")} -> 0x${t.physical!.toString(16)} (paging off)\n`,
        );
      if (o.explain && format) for (const l of pathLines(format, t.path)) io.stdout.write(`${l}\n`);
    }
  }
  return results.every((t) => t.ok) ? 0 : 1;
}
