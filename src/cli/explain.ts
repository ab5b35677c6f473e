/**
 * Words for walks: level names (PML4E, PDE, EPT PTE ...), decoded entry flags, page
 * sizes, #PF error codes and EPT exit qualifications. Shared by `translate --explain`
 * and `demo`.
 */

import {
  EPT_EFF_R,
  EPT_EFF_W,
  EPT_EFF_X,
  EPT_EFF_XU,
  X86_EFF_U,
  X86_EFF_W,
  X86_EFF_X,
} from "../arch/access.js";
import { FORMAT_EPT, type PagingFormat } from "../arch/format.js";
import { hi32, lo32 } from "../arch/u64.js";
import type { PathEntry, Translation, WalkFault } from "../walk/translation.js";

const X86_LEVEL_NAMES = ["", "PTE", "PDE", "PDPTE", "PML4E", "PML5E"];

/** The SDM's name for an entry at `level` of `format`: PTE, PDE, PDPTE, PML4E, PML5E (EPT: "EPT PDE" ...). */
export function levelName(format: PagingFormat, level: number): string {
  const n = X86_LEVEL_NAMES[level] ?? `level-${level}`;
  return format.kind === FORMAT_EPT ? `EPT ${n}` : n;
}

/** "4 KiB", "2 MiB", "1 GiB". */
export function pageSizeText(bytes: number): string {
  if (bytes >= 2 ** 30) return `${bytes / 2 ** 30} GiB`;
  if (bytes >= 2 ** 20) return `${bytes / 2 ** 20} MiB`;
  return `${bytes / 1024} KiB`;
}

/** Whether the entry ends the walk (maps a page) at `level`. */
export function isLeaf(format: PagingFormat, level: number, lo: number): boolean {
  return level === 1 || ((format.largeLevels >>> level) & (lo >>> 7) & 1) !== 0;
}

/** Reserved bits set in the entry (as a bigint mask; 0n when none). */
export function reservedBits(format: PagingFormat, level: number, lo: number, hi: number): bigint {
  const k = level * 2 + (isLeaf(format, level, lo) ? 1 : 0);
  return (BigInt((hi & format.rsvdHi[k]) >>> 0) << 32n) | BigInt((lo & format.rsvdLo[k]) >>> 0);
}

const EPT_MEMORY_TYPES = ["UC", "WC", "MT2", "MT3", "WT", "WP", "WB", "MT7"];

/** Decoded flags of an entry, e.g. ["P", "W", "U", "A", "PS", "G", "XD"]. */
export function entryFlags(format: PagingFormat, level: number, value: bigint): string[] {
  const lo = lo32(value);
  const hi = hi32(value);
  const leaf = isLeaf(format, level, lo);
  const f: string[] = [];
  const bit = (b: number, name: string) => {
    if ((lo >>> b) & 1) f.push(name);
  };
  if (format.kind === FORMAT_EPT) {
    bit(0, "R");
    bit(1, "W");
    bit(2, "X");
    if (format.mbec) bit(10, "XU");
    if (leaf) {
      f.push(`MT=${EPT_MEMORY_TYPES[(lo >>> 3) & 7]}`);
      bit(6, "IPAT");
    }
    if (level > 1) bit(7, "PS");
    if (format.accessedMask) {
      bit(8, "A");
      if (leaf) bit(9, "D");
    }
    if (hi >>> 31) f.push("SVE");
  } else if (format.rootIsPdpteRegisters && level === 3) {
    bit(0, "P");
    bit(3, "PWT");
    bit(4, "PCD");
  } else {
    bit(0, "P");
    bit(1, "W");
    bit(2, "U");
    bit(3, "PWT");
    bit(4, "PCD");
    bit(5, "A");
    if (leaf) bit(6, "D");
    if (level === 1) bit(7, "PAT");
    else bit(7, "PS");
    if (leaf) bit(8, "G");
    if (leaf && level > 1) bit(12, "PAT");
    if (format.entryBytes === 8 && hi >>> 31) f.push("XD");
    const pk = (hi >>> 27) & 15;
    if (leaf && format.levels >= 4 && pk !== 0) f.push(`PK=${pk}`);
  }
  const rsvd = reservedBits(format, level, lo, hi);
  if (rsvd !== 0n) f.push(`RSVD=0x${rsvd.toString(16)}`);
  return f;
}

/** Names of the #PF error-code bits set (SDM 4.7). */
export function pfErrorBits(code: number): string {
  const names = ["P", "W", "U", "RSVD", "I", "PK"];
  const set = names.filter((_, i) => (code >>> i) & 1);
  return set.length ? set.join(" ") : "none";
}

/** Names of the EPT violation exit-qualification bits set (SDM Table 28-7). */
export function eptQualificationBits(q: number): string {
  const names = [
    "read",
    "write",
    "fetch",
    "readable",
    "writable",
    "executable",
    "user-executable",
    "linear-valid",
    "linear-translation",
  ];
  const set = names.filter((_, i) => (q >>> i) & 1);
  return set.length ? set.join(" ") : "none";
}

/** "user, writable, executable". */
export function rightsText(format: PagingFormat, eff: number): string {
  if (format.kind === FORMAT_EPT) {
    const r = [eff & EPT_EFF_R ? "R" : "-", eff & EPT_EFF_W ? "W" : "-", eff & EPT_EFF_X ? "X" : "-"].join(
      "",
    );
    return format.mbec ? `${r}${eff & EPT_EFF_XU ? "U" : "-"}` : r;
  }
  return [
    eff & X86_EFF_U ? "user" : "supervisor",
    eff & X86_EFF_W ? "writable" : "read-only",
    eff & X86_EFF_X ? "executable" : "no-execute",
  ].join(", ");
}

const REASON_TEXT: Record<string, string> = {
  "not-present": "not present",
  "reserved-bit": "reserved bit set",
  protection: "access rights",
  "protection-key": "protection key",
  "non-canonical": "non-canonical",
  "table-not-in-memory": "paging structure not in memory",
  "ept-misconfigured-bits": "forbidden R/W/X combination or memory type",
};

/** The reason of a fault in words. */
export function reasonText(reason: string): string {
  return REASON_TEXT[reason] ?? reason;
}

/** One-line description of a fault. */
export function faultText(format: PagingFormat, fault: WalkFault): string {
  const where = fault.level > 0 ? ` at the ${levelName(format, fault.level)}` : "";
  switch (fault.kind) {
    case "page-fault":
      return `#PF error code 0x${fault.errorCode.toString(16)} (${pfErrorBits(fault.errorCode)}): ${reasonText(fault.reason)}${where}`;
    case "general-protection":
      return `#GP: ${reasonText(fault.reason)} address`;
    case "ept-violation":
      return `EPT violation, exit qualification 0x${fault.errorCode.toString(16)} (${eptQualificationBits(fault.errorCode)}): ${reasonText(fault.reason)}${where}`;
    default:
      return `EPT misconfiguration: ${reasonText(fault.reason)}${where}`;
  }
}

/** The path of a walk, one line per level (with a leading indent). */
export function pathLines(format: PagingFormat, path: readonly PathEntry[], indent = "    "): string[] {
  const width = format.entryBytes === 8 ? 16 : 8;
  const nameWidth = format.kind === FORMAT_EPT ? 9 : 5;
  return path.map((p) => {
    const name = levelName(format, p.level).padEnd(nameWidth);
    const at = `0x${p.entryAddress.toString(16).padStart(format.entryBytes === 8 ? 9 : 8, "0")}`;
    if (p.missing) return `${indent}${name} at ${at}  (not in memory)`;
    const value = `0x${p.before.toString(16).padStart(width, "0")}`;
    const src = p.fromRegister ? "  (PDPTE register, loaded at CR3 load)" : "";
    const flags = entryFlags(format, p.level, p.before).join(" ");
    return `${indent}${name} at ${at} = ${value}${flags ? `  ${flags}` : ""}${src}`;
  });
}

/** "0x... -> 0x... (4 KiB page; user, writable, executable)" or "0x... -> #PF ...". */
export function resultLine(format: PagingFormat, t: Translation, addrWidth: number): string {
  const va = `0x${t.address.toString(16).padStart(addrWidth, "0")}`;
  if (t.ok) {
    const pk = format.levels >= 4 && format.kind !== FORMAT_EPT && t.pkey ? `, key ${t.pkey}` : "";
    return `${va} -> 0x${t.physical!.toString(16)} (${pageSizeText(t.pageSize!)} page; ${rightsText(format, t.effective!)}${pk})`;
  }
  return `${va} -> ${faultText(format, t.fault!)}`;
}
