/**
 * An independent x86 paging oracle for the tests, written from the Intel SDM Vol. 3A
 * chapter 4 (paging) and nothing else of vmmu's: it imports no vmmu module.
 *
 *  - 4.3 32-bit paging (PSE, PSE-36), 4.4 PAE paging (PDPTE registers), 4.5 4-level and
 *    5-level paging (canonical addresses, 1 GiB pages, protection keys in bits 62:59);
 *  - reserved bits: the entry format tables 4-4..4-6 (32-bit), 4-8..4-11 (PAE),
 *    4-14..4-20 (4/5-level); AMD additionally reserves bit 8 of non-leaf PML5E/PML4E/PDPTE
 *    (AMD APM Vol. 2 5.3.3 "MBZ");
 *  - 4.6.1 access rights (U/S, R/W, XD, CR0.WP, SMEP, SMAP with EFLAGS.AC and implicit
 *    supervisor accesses), 4.6.2 protection keys (PKRU for user-mode addresses, IA32_PKRS
 *    for supervisor-mode addresses, data accesses only);
 *  - 4.7 the #PF error code (P, W/R, U/S, RSVD, I/D, PK);
 *  - 4.8 accessed and dirty flags. What a *faulting* walk does to A is left open by the
 *    SDM; the oracle follows QEMU (target/i386/tcg/sysemu/excp_helper.c): A on every entry
 *    above one that is not present or has a reserved bit; A on every non-leaf entry for a
 *    protection (or protection-key) fault; never on the faulting entry; D only on a
 *    successful write. PAE PDPTEs are registers loaded at CR3 load and get no A.
 *
 * Values are bigints (entries, linear addresses) and Numbers (physical addresses < 2^53).
 * The oracle is deliberately simple and slow-ish; clarity beats speed.
 */

export type OraclePagingMode = "32bit" | "pae" | "4level" | "5level";
export type OracleAccessKind = "read" | "write" | "fetch";
/** user = explicit access at CPL 3; supervisor = explicit at CPL < 3; implicit = implicit supervisor access (any CPL). */
export type OraclePrivilege = "user" | "supervisor" | "implicit";

export interface OracleCpu {
  vendor: "intel" | "amd";
  /** MAXPHYADDR. */
  maxPhyAddr: number;
  /** PSE-36: 4 MiB pages may map physical bits 39:32 (from PDE bits 20:13). */
  pse36: boolean;
  /** 1 GiB pages (CPUID.80000001H:EDX.Page1GB). */
  gbPages: boolean;
}

export interface OracleControl {
  /** CR0.WP */
  wp: boolean;
  /** CR4.PSE (32-bit paging only). */
  pse: boolean;
  smep: boolean;
  smap: boolean;
  /** CR4.PKE, CR4.PKS: effective only with IA-32e (4/5-level) paging (4.6.2). */
  pke: boolean;
  pks: boolean;
  /** IA32_EFER.NXE (meaningless for 32-bit paging, whose entries have no XD bit). */
  nxe: boolean;
  pkru: number;
  pkrs: number;
}

export interface OracleAccess {
  kind: OracleAccessKind;
  privilege: OraclePrivilege;
  /** EFLAGS.AC at the access. */
  ac: boolean;
}

/** Physical memory as the oracle sees it: the little-endian value at `pa`, or null when the address is not RAM. */
export interface OracleMemory {
  read(pa: number, bytes: 4 | 8): bigint | null;
}

export type OracleReason =
  | "none"
  | "not-present"
  | "reserved-bit"
  | "protection"
  | "protection-key"
  | "non-canonical"
  | "table-not-in-memory";

export interface OraclePathEntry {
  /** 5 (PML5E) .. 1 (PTE); PAE PDPTE is 3, 32-bit PDE is 2. */
  level: number;
  /** Physical address of the entry (PAE PDPTE: where it was loaded from). */
  addr: number;
  bytes: 4 | 8;
  /** The value used (null: the table is not RAM). */
  value: bigint | null;
  /** A PAE PDPTE register. */
  register: boolean;
}

export interface OracleResult {
  fault: "none" | "page" | "gp";
  /** #PF error code (0 unless fault === "page"). */
  errorCode: number;
  reason: OracleReason;
  /** Level of the not-present/reserved entry; 0 for protection faults, #GP and success. */
  faultLevel: number;
  /** Physical address (success only, else -1). */
  physical: number;
  /** Page size in bytes (success only, else 0). */
  pageSize: number;
  path: OraclePathEntry[];
  /** Path indices whose entry gets A (registers never do). */
  accessed: number[];
  /** Path index whose entry gets D, or -1. */
  dirty: number;
}

export const PF_P = 1;
export const PF_W = 2;
export const PF_U = 4;
export const PF_RSVD = 8;
export const PF_I = 16;
export const PF_PK = 32;

const BIT_P = 1n << 0n;
const BIT_RW = 1n << 1n;
const BIT_US = 1n << 2n;
const BIT_A = 1n << 5n;
const BIT_D = 1n << 6n;
const BIT_PS = 1n << 7n;
const BIT_XD = 1n << 63n;

/** Mask of bits lo..hi inclusive (empty when hi < lo). */
export function bitRange(lo: number, hi: number): bigint {
  if (hi < lo) return 0n;
  return ((1n << BigInt(hi - lo + 1)) - 1n) << BigInt(lo);
}

const isLong = (mode: OraclePagingMode) => mode === "4level" || mode === "5level";

/** Levels walked from the root, in order. */
export function levelsOf(mode: OraclePagingMode): number[] {
  switch (mode) {
    case "32bit":
      return [2, 1];
    case "pae":
      return [3, 2, 1];
    case "4level":
      return [4, 3, 2, 1];
    case "5level":
      return [5, 4, 3, 2, 1];
  }
}

export function entryBytes(mode: OraclePagingMode): 4 | 8 {
  return mode === "32bit" ? 4 : 8;
}

/** Index of `va` into the table at `level` (4.3, 4.4.2, 4.5.4). */
export function tableIndex(mode: OraclePagingMode, level: number, va: bigint): number {
  if (mode === "32bit") return Number((va >> (level === 2 ? 22n : 12n)) & 0x3ffn);
  if (mode === "pae" && level === 3) return Number((va >> 30n) & 3n);
  return Number((va >> BigInt(12 + 9 * (level - 1))) & 0x1ffn);
}

/** log2 of the page a leaf at `level` maps. */
export function pageShiftOf(mode: OraclePagingMode, level: number): number {
  if (level === 1) return 12;
  if (mode === "32bit") return 22;
  return level === 2 ? 21 : 30;
}

/** Whether an entry (present) at `level` maps a page rather than referencing a table. */
export function isLeaf(
  mode: OraclePagingMode,
  control: OracleControl,
  level: number,
  value: bigint,
): boolean {
  if (level === 1) return true;
  const ps = (value & BIT_PS) !== 0n;
  if (mode === "32bit") return level === 2 && ps && control.pse; // PS is ignored when CR4.PSE=0 (4.3)
  if (mode === "pae") return level === 2 && ps; // PDPTEs are never leaves in PAE paging
  // 4/5-level: PS at a PML4E/PML5E is reserved (caught by the reserved mask); a PDPTE with PS=1 maps
  // 1 GiB only with 1-GByte page support, else PS is reserved there too.
  return level <= 3 && ps;
}

/**
 * Reserved bits of a present entry at `level` (SDM tables 4-4..4-20, 4.5.1; AMD APM for bit 8).
 * `leaf` is whether the entry maps a page (as decided by `isLeaf`, except that a 4/5-level
 * PDPTE with PS=1 on a CPU without 1 GiB pages counts as a non-leaf with PS reserved).
 */
export function reservedMask(
  mode: OraclePagingMode,
  cpu: OracleCpu,
  control: OracleControl,
  level: number,
  value: bigint,
): bigint {
  const M = cpu.maxPhyAddr;
  const ps = (value & BIT_PS) !== 0n;
  if (mode === "32bit") {
    if (level === 2 && ps && control.pse) {
      // 4 MiB page (table 4-4): bit 21 reserved; bits 20:13 hold physical bits 39:32, of which
      // those at or above min(MAXPHYADDR, 40) are reserved (all of them without PSE-36).
      const m32 = cpu.pse36 ? Math.min(M, 40) : 32;
      return (1n << 21n) | bitRange(13 + (m32 - 32), 20);
    }
    return 0n; // 32-bit PDEs referencing a page table, and PTEs, have no reserved bits
  }
  const xd = control.nxe ? 0n : BIT_XD; // XD is reserved when IA32_EFER.NXE=0 (4.4.2, 4.5.4)
  if (mode === "pae") {
    const high = bitRange(M, 62); // tables 4-8..4-11: bits 62:M reserved
    if (level === 3) return bitRange(1, 2) | bitRange(5, 8) | bitRange(M, 63); // PDPTE register (table 4-8)
    if (level === 2 && ps) return high | xd | bitRange(13, 20);
    return high | xd;
  }
  const high = bitRange(M, 51); // tables 4-14..4-20: bits 51:M reserved; 62:52 ignored (or PK)
  const amdBit8 = cpu.vendor === "amd" ? 1n << 8n : 0n;
  if (level >= 4) return high | xd | BIT_PS | amdBit8; // PML5E, PML4E: PS (bit 7) must be 0
  if (level === 3) {
    if (!ps) return high | xd | amdBit8;
    if (!cpu.gbPages) return high | xd | BIT_PS | amdBit8; // no 1-GByte pages: PS is reserved
    return high | xd | bitRange(13, 29); // 1 GiB page (table 4-16)
  }
  if (level === 2 && ps) return high | xd | bitRange(13, 20); // 2 MiB page (table 4-18)
  return high | xd;
}

/** Physical address a non-leaf entry references (the next table), 4 KiB aligned. */
export function tableAddressOf(mode: OraclePagingMode, value: bigint): number {
  if (mode === "32bit") return Number(value & 0xfffff000n);
  return Number(value & bitRange(12, 51)); // bits above MAXPHYADDR are reserved, checked before
}

/** Physical base of the page a leaf maps. */
export function pageBaseOf(mode: OraclePagingMode, level: number, value: bigint): number {
  if (mode === "32bit") {
    if (level === 1) return Number(value & 0xfffff000n);
    // 4 MiB page: bits 31:22 of the PDE are address bits 31:22; bits 20:13 are address bits 39:32 (PSE-36).
    return Number((value & 0xffc00000n) | (((value >> 13n) & 0xffn) << 32n));
  }
  return Number(value & bitRange(pageShiftOf(mode, level), 51));
}

/** Whether a 64-bit linear address is canonical for the mode (4.5: 48 or 57 implemented bits). */
export function isCanonical(mode: OraclePagingMode, va: bigint): boolean {
  if (!isLong(mode)) return true;
  const bits = mode === "5level" ? 57n : 48n;
  const top = va >> (bits - 1n); // bits 63:(bits-1) must be all 0 or all 1
  return top === 0n || top === (1n << (65n - bits)) - 1n;
}

export type PdpteLoad = { ok: true; pdptes: bigint[] } | { ok: false; reason: string };

/**
 * MOV to CR3 with PAE paging (4.4.1): loads the four PDPTEs from the 32-byte aligned PDPT
 * at CR3 bits 31:5. A present PDPTE with a reserved bit set → #GP (here: ok=false). A PDPT
 * that is not RAM is refused as well.
 */
export function loadPdptes(
  cpu: OracleCpu,
  control: OracleControl,
  cr3: bigint,
  mem: OracleMemory,
): PdpteLoad {
  const base = Number(cr3 & 0xffffffe0n);
  const pdptes: bigint[] = [];
  for (let i = 0; i < 4; i++) {
    const v = mem.read(base + 8 * i, 8);
    if (v === null) return { ok: false, reason: `PDPT at 0x${base.toString(16)} is not in memory` };
    if (v & BIT_P && v & reservedMask("pae", cpu, control, 3, v))
      return { ok: false, reason: `PDPTE${i} has reserved bits set` };
    pdptes.push(v);
  }
  return { ok: true, pdptes };
}

export interface OracleContext {
  mode: OraclePagingMode;
  cpu: OracleCpu;
  control: OracleControl;
  /** CR3 as used for the walk: the root table address (PAE: the PDPT address). No PCID bits. */
  cr3: bigint;
  /** PAE only: the PDPTE registers (from `loadPdptes`). */
  pdptes?: readonly bigint[];
}

/** The I/D bit rule (4.7): I/D=1 for a fetch when CR4.SMEP=1, or CR4.PAE=1 (PAE/4/5-level) and IA32_EFER.NXE=1. */
export function fetchReportsId(mode: OraclePagingMode, control: OracleControl): boolean {
  return control.smep || (mode !== "32bit" && control.nxe);
}

/** Access rights only (4.6.1), given the combined rights of the translation. */
export function accessRightsAllow(
  mode: OraclePagingMode,
  control: OracleControl,
  access: OracleAccess,
  userAddress: boolean,
  writable: boolean,
  executeDisabled: boolean,
): boolean {
  const nx = mode !== "32bit" && control.nxe && executeDisabled;
  if (access.privilege === "user") {
    if (!userAddress) return false; // user-mode accesses reach user-mode addresses only
    if (access.kind === "write") return writable; // CR0.WP does not matter for user-mode writes
    if (access.kind === "fetch") return !nx;
    return true;
  }
  // Supervisor-mode access (explicit at CPL < 3, or implicit at any CPL).
  const smapBlocks =
    control.smap && userAddress && (access.privilege === "implicit" || !access.ac) && access.kind !== "fetch";
  switch (access.kind) {
    case "read":
      return !smapBlocks;
    case "write":
      if (smapBlocks) return false;
      return writable || !control.wp;
    case "fetch":
      if (userAddress && control.smep) return false;
      return !nx;
  }
}

/**
 * An open question, decided here as vmmu (and QEMU 7.2) decide it: is IA32_PKRS consulted
 * for a *user-mode* access to a supervisor-mode address? Such an access always faults
 * through U/S (4.6.1), so only the PK bit of the error code depends on the answer. SDM 4.6.2
 * states PKRS's write-disable rule with CR0.WP alone (the PKRU rule adds "or a user-mode
 * access"), and QEMU (excp_helper.c: the U/S check precedes the key check) does not consult
 * PKRS; Xen's guest walker (guest_walk.c) checks keys first and would set PK. vmmu documents
 * its choice in conformance/DEVIATIONS.md ("PKS and user-mode accesses"). Flip this to
 * test the other reading.
 */
export const PKRS_APPLIES_TO_USER_ACCESSES = false;

/**
 * Protection keys (4.6.2, and the PK flag of 4.7): true when the key denies the access.
 * Only IA-32e paging, only data accesses. PKRU governs user-mode addresses when CR4.PKE=1,
 * IA32_PKRS governs supervisor-mode addresses when CR4.PKS=1. ADi denies all data accesses;
 * WDi denies writes that are user-mode accesses or happen with CR0.WP=1.
 */
export function protectionKeyDenies(
  mode: OraclePagingMode,
  control: OracleControl,
  access: OracleAccess,
  userAddress: boolean,
  key: number,
): boolean {
  if (!isLong(mode) || access.kind === "fetch") return false;
  let reg: number;
  if (userAddress) {
    if (!control.pke) return false;
    reg = control.pkru;
  } else {
    if (!control.pks) return false;
    if (access.privilege === "user" && !PKRS_APPLIES_TO_USER_ACCESSES) return false;
    reg = control.pkrs;
  }
  const ad = (reg >>> (2 * key)) & 1;
  const wd = (reg >>> (2 * key + 1)) & 1;
  if (ad) return true;
  return access.kind === "write" && wd === 1 && (access.privilege === "user" || control.wp);
}

/**
 * Walks `va` for `access` as the processor would, reading entries from `mem` (which it
 * never modifies); the result says which entries get A/D afterwards.
 */
export function oracleWalk(
  ctx: OracleContext,
  va: bigint,
  access: OracleAccess,
  mem: OracleMemory,
): OracleResult {
  const { mode, cpu, control } = ctx;
  const bytes = entryBytes(mode);
  const result: OracleResult = {
    fault: "none",
    errorCode: 0,
    reason: "none",
    faultLevel: 0,
    physical: -1,
    pageSize: 0,
    path: [],
    accessed: [],
    dirty: -1,
  };
  const baseCode =
    (access.kind === "write" ? PF_W : 0) |
    (access.privilege === "user" ? PF_U : 0) |
    (access.kind === "fetch" && fetchReportsId(mode, control) ? PF_I : 0);
  const memoryEntriesBefore = (n: number) => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) if (!result.path[i].register) out.push(i);
    return out;
  };
  const pageFault = (code: number, reason: OracleReason, level: number, accessedUpTo: number) => {
    result.fault = "page";
    result.errorCode = baseCode | code;
    result.reason = reason;
    result.faultLevel = level;
    result.accessed = memoryEntriesBefore(accessedUpTo);
    return result;
  };

  if (!isCanonical(mode, va)) {
    result.fault = "gp";
    result.reason = "non-canonical";
    return result;
  }

  let tableAddr: number =
    mode === "32bit" ? Number(ctx.cr3 & 0xfffff000n) : Number(ctx.cr3 & bitRange(12, 51));
  let userAddress = true; // U/S=1 in every entry (PAE PDPTEs have no U/S: they allow)
  let writable = true; // R/W=1 in every entry
  let executeDisabled = false; // XD=1 in some entry
  for (const level of levelsOf(mode)) {
    const i = result.path.length;
    let value: bigint | null;
    let addr: number;
    let register = false;
    if (mode === "pae" && level === 3) {
      const idx = tableIndex(mode, 3, va);
      addr = Number(ctx.cr3 & 0xffffffe0n) + 8 * idx;
      value = ctx.pdptes![idx];
      register = true;
    } else {
      addr = tableAddr + tableIndex(mode, level, va) * bytes;
      value = mem.read(addr, bytes);
    }
    result.path.push({ level, addr, bytes, value, register });
    if (value === null) return pageFault(0, "table-not-in-memory", level, i);
    if ((value & BIT_P) === 0n) return pageFault(0, "not-present", level, i);
    if (value & reservedMask(mode, cpu, control, level, value))
      return pageFault(PF_P | PF_RSVD, "reserved-bit", level, i);
    if (!register) {
      if ((value & BIT_US) === 0n) userAddress = false;
      if ((value & BIT_RW) === 0n) writable = false;
      if (mode !== "32bit" && value & BIT_XD) executeDisabled = true;
    }
    if (isLeaf(mode, control, level, value)) {
      const key = isLong(mode) ? Number((value >> 59n) & 0xfn) : 0;
      const pkDenies = protectionKeyDenies(mode, control, access, userAddress, key);
      const rightsAllow = accessRightsAllow(mode, control, access, userAddress, writable, executeDisabled);
      if (pkDenies) return pageFault(PF_P | PF_PK, "protection-key", 0, i);
      if (!rightsAllow) return pageFault(PF_P, "protection", 0, i);
      const shift = pageShiftOf(mode, level);
      const size = 2 ** shift;
      result.physical = pageBaseOf(mode, level, value) + Number(va & BigInt(size - 1));
      result.pageSize = size;
      result.accessed = memoryEntriesBefore(i + 1);
      result.dirty = access.kind === "write" ? i : -1;
      return result;
    }
    tableAddr = tableAddressOf(mode, value);
  }
  throw new Error("unreachable: the walk always ends at level 1");
}

/** The memory writes a walk makes: entry address → bits OR-ed in (A = bit 5, D = bit 6). */
export function accessedDirtyWrites(r: OracleResult): Map<number, { bytes: 4 | 8; set: bigint }> {
  const out = new Map<number, { bytes: 4 | 8; set: bigint }>();
  const add = (i: number, bit: bigint) => {
    const e = r.path[i];
    if (e.register) return;
    const prev = out.get(e.addr);
    out.set(e.addr, { bytes: e.bytes, set: (prev?.set ?? 0n) | bit });
  };
  for (const i of r.accessed) add(i, BIT_A);
  if (r.dirty >= 0) add(r.dirty, BIT_D);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Structured cases: per-level entry bits → a table layout in memory → the expected walk.
// ---------------------------------------------------------------------------------------------

/** Bits of one paging-structure entry, as a case describes it. Unset fields take the default. */
export interface LevelSpec {
  /** Present (default true). */
  p?: boolean;
  /** R/W (default true). */
  rw?: boolean;
  /** U/S (default true). */
  us?: boolean;
  a?: boolean;
  d?: boolean;
  /** PS (default: true for a leaf above level 1, false otherwise). */
  ps?: boolean;
  /** XD, bit 63 (64-bit entries only). */
  nx?: boolean;
  /** Protection key, bits 62:59 (64-bit entries only). */
  pk?: number;
  /** Extra bits OR-ed into the entry (e.g. one reserved bit). */
  extra?: bigint;
  /** Override of the whole address field (physical address the entry references/maps). */
  addr?: number;
}

export interface CaseSpec {
  mode: OraclePagingMode;
  cpu: OracleCpu;
  control: OracleControl;
  access: OracleAccess;
  va: bigint;
  /** Entries from the root down to the leaf (their count decides the page size). */
  levels: LevelSpec[];
  /** Physical address of each table (root first); PAE: [0] is the 32-byte aligned PDPT. */
  tables: number[];
  /** Physical base address of the page the leaf maps. */
  page: number;
}

export interface BuiltEntry {
  level: number;
  addr: number;
  bytes: 4 | 8;
  value: bigint;
}

/** Encodes one entry's bits. `target` is the physical address it references or maps. */
export function encodeEntry(
  mode: OraclePagingMode,
  level: number,
  leaf: boolean,
  s: LevelSpec,
  target: number,
): bigint {
  const pdpteRegister = mode === "pae" && level === 3;
  let v = 0n;
  if (s.p ?? true) v |= BIT_P;
  if (!pdpteRegister) {
    // PAE PDPTEs have no R/W, U/S, A, D, PS, XD: bits 2:1 and 8:5 are reserved there.
    if (s.rw ?? true) v |= BIT_RW;
    if (s.us ?? true) v |= BIT_US;
    if (s.a) v |= BIT_A;
    if (s.d) v |= BIT_D;
    if (s.ps ?? (leaf && level > 1)) v |= BIT_PS;
    if (s.nx && mode !== "32bit") v |= BIT_XD;
    if (s.pk !== undefined && mode !== "32bit") v |= BigInt(s.pk & 0xf) << 59n;
  }
  const a = s.addr ?? target;
  if (mode === "32bit" && leaf && level === 2) {
    v |= BigInt(a % 2 ** 32) & 0xffc00000n;
    v |= BigInt(Math.floor(a / 2 ** 32) & 0xff) << 13n; // PSE-36: physical bits 39:32 in bits 20:13
  } else if (mode === "32bit") {
    v |= BigInt(a) & 0xfffff000n;
  } else {
    v |= BigInt(a) & bitRange(12, 51);
  }
  return v | (s.extra ?? 0n);
}

/** Lays a case out: CR3 and the entries to write (root first). */
export function buildCase(spec: CaseSpec): { cr3: bigint; entries: BuiltEntry[] } {
  const levels = levelsOf(spec.mode);
  const bytes = entryBytes(spec.mode);
  const entries: BuiltEntry[] = [];
  for (let i = 0; i < spec.levels.length; i++) {
    const level = levels[i];
    const leaf = i === spec.levels.length - 1;
    const index = tableIndex(spec.mode, level, spec.va);
    const addr = spec.tables[i] + index * bytes;
    const target = leaf ? spec.page : spec.tables[i + 1];
    entries.push({ level, addr, bytes, value: encodeEntry(spec.mode, level, leaf, spec.levels[i], target) });
  }
  return { cr3: BigInt(spec.tables[0]), entries };
}

/** A memory of only the given entries (everything else reads as zero, inside `ramFrames`). */
export function entriesMemory(entries: readonly BuiltEntry[], isRam: (pa: number) => boolean): OracleMemory {
  const m = new Map<number, bigint>();
  for (const e of entries) m.set(e.addr, e.value);
  return {
    read(pa, bytes) {
      if (!isRam(pa)) return null;
      const v = m.get(pa) ?? 0n;
      return bytes === 4 ? v & 0xffffffffn : v;
    },
  };
}

export interface ExpectedCase {
  cr3: bigint;
  entries: BuiltEntry[];
  /** PAE: the CR3 load (PDPTE registers) outcome; a failed load means #GP at MOV CR3 and no walk. */
  load: PdpteLoad | null;
  /** The walk (null when the CR3 load failed). */
  walk: OracleResult | null;
  /** Every written entry's value after the walk. */
  after: bigint[];
}

/**
 * The expected outcome of a structured case: fault or not, the error code, the physical
 * address and page size, and the value of every entry afterwards (A/D).
 */
export function expectedWalk(spec: CaseSpec, isRam: (pa: number) => boolean = () => true): ExpectedCase {
  const { cr3, entries } = buildCase(spec);
  const mem = entriesMemory(entries, isRam);
  let load: PdpteLoad | null = null;
  let ctx: OracleContext = { mode: spec.mode, cpu: spec.cpu, control: spec.control, cr3 };
  if (spec.mode === "pae") {
    load = loadPdptes(spec.cpu, spec.control, cr3, mem);
    if (!load.ok) return { cr3, entries, load, walk: null, after: entries.map((e) => e.value) };
    ctx = { ...ctx, pdptes: load.pdptes };
  }
  const walk = oracleWalk(ctx, spec.va, spec.access, mem);
  const writes = accessedDirtyWrites(walk);
  const after = entries.map((e) => e.value | (writes.get(e.addr)?.set ?? 0n));
  return { cr3, entries, load, walk, after };
}
