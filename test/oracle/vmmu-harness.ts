/**
 * Drives vmmu's guest walker through its public API for oracle-described cases, and
 * compares the outcome with the oracle's. Shared by the access matrix and the property tests.
 */

import {
  ACCESS_AC,
  ACCESS_FETCH,
  ACCESS_IMPLICIT,
  ACCESS_USER,
  ACCESS_WRITE,
  type CpuFeatures,
  CpuRole,
  cpuModel,
  cpuWalker,
  FAULT_GP,
  FAULT_NONE,
  FAULT_PAGE,
  GuestPhysical,
  type GuestWalker,
  HostMemory,
  loadCr3,
  Memslots,
  REASON_NAMES,
  Walk,
} from "../../src/index.js";
import {
  type CaseSpec,
  type ExpectedCase,
  expectedWalk,
  type OracleAccess,
  type OracleControl,
  type OracleCpu,
  type OracleMemory,
  type OraclePagingMode,
} from "./x86-paging-oracle.js";

// Architectural register bits (SDM Vol. 3A 2.5, 2.2.1), spelled out here rather than imported.
const CR0_PE = 1n << 0n;
const CR0_WP = 1n << 16n;
const CR0_PG = 1n << 31n;
const CR4_PSE = 1n << 4n;
const CR4_PAE = 1n << 5n;
const CR4_LA57 = 1n << 12n;
const CR4_SMEP = 1n << 20n;
const CR4_SMAP = 1n << 21n;
const CR4_PKE = 1n << 22n;
const CR4_PKS = 1n << 24n;
const EFER_LME = 1n << 8n;
const EFER_LMA = 1n << 10n;
const EFER_NXE = 1n << 11n;

export interface NamedCpu {
  name: string;
  features: CpuFeatures;
  oracle: OracleCpu;
}

/** A CPU for the tests: a named vmmu model, optionally with features overridden. */
export function testCpu(model: string, override: Partial<CpuFeatures> = {}, name?: string): NamedCpu {
  const features: CpuFeatures = { ...cpuModel(model), ...override };
  return {
    name: name ?? model,
    features,
    oracle: {
      vendor: features.vendor,
      maxPhyAddr: features.maxPhyAddr,
      pse36: features.pse36,
      gbPages: features.gbPages,
    },
  };
}

export function registersFor(mode: OraclePagingMode, c: OracleControl) {
  let cr0 = CR0_PE | CR0_PG;
  if (c.wp) cr0 |= CR0_WP;
  let cr4 = 0n;
  if (mode !== "32bit") cr4 |= CR4_PAE;
  if (mode === "5level") cr4 |= CR4_LA57;
  if (c.pse) cr4 |= CR4_PSE;
  if (c.smep) cr4 |= CR4_SMEP;
  if (c.smap) cr4 |= CR4_SMAP;
  if (c.pke) cr4 |= CR4_PKE;
  if (c.pks) cr4 |= CR4_PKS;
  let efer = 0n;
  if (mode === "4level" || mode === "5level") efer |= EFER_LME | EFER_LMA;
  if (c.nxe) efer |= EFER_NXE;
  return { cr0, cr4, efer, pkru: c.pkru >>> 0, pkrs: c.pkrs >>> 0 };
}

export function accessBits(a: OracleAccess): number {
  let bits = a.kind === "write" ? ACCESS_WRITE : a.kind === "fetch" ? ACCESS_FETCH : 0;
  if (a.privilege === "user") bits |= ACCESS_USER;
  else if (a.privilege === "implicit") bits |= ACCESS_IMPLICIT;
  if (a.ac) bits |= ACCESS_AC;
  return bits;
}

/** Small guest memory: one memslot of `frames` 4 KiB frames at guest-physical 0. */
export function smallMemory(frames: number): GuestPhysical {
  const physical = new GuestPhysical(new Memslots(), new HostMemory(frames * 4096 + (4 << 20)));
  physical.memslots.add({ id: 0, baseGfn: 0, pages: frames, hvaPage: 0x100 });
  return physical;
}

/** Reads an entry (4 or 8 bytes) through the FrameSource interface; null when not RAM. */
export function readEntry(physical: GuestPhysical, pa: number, bytes: 4 | 8): bigint | null {
  const words = physical.frameWords(Math.floor(pa / 4096));
  if (!words) return null;
  const i = physical.frameBase + ((pa % 4096) >>> 2);
  const lo = BigInt(words[i]);
  return bytes === 8 ? (BigInt(words[i + 1]) << 32n) | lo : lo;
}

export function writeEntry(physical: GuestPhysical, pa: number, bytes: 4 | 8, value: bigint): void {
  const words = physical.frameWords(Math.floor(pa / 4096));
  if (!words) throw new RangeError(`entry address 0x${pa.toString(16)} is not RAM`);
  const i = physical.frameBase + ((pa % 4096) >>> 2);
  words[i] = Number(value & 0xffffffffn);
  if (bytes === 8) words[i + 1] = Number((value >> 32n) & 0xffffffffn);
}

/** The oracle's view of a GuestPhysical (read-only). */
export function oracleMemoryOf(physical: GuestPhysical): OracleMemory {
  return { read: (pa, bytes) => readEntry(physical, pa, bytes) };
}

export interface Actual {
  /** PAE: whether loadCr3 accepted CR3 (PDPTE registers); always true otherwise. */
  loadOk: boolean;
  fault: "none" | "page" | "gp" | "other";
  errorCode: number;
  reason: string;
  faultLevel: number;
  physical: number;
  pageSize: number;
  after: bigint[];
}

export function describeCase(spec: CaseSpec, cpuName: string): string {
  const bits = (o: object) =>
    Object.entries(o)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) =>
        typeof v === "boolean"
          ? v
            ? k
            : `!${k}`
          : typeof v === "bigint"
            ? `${k}=0x${v.toString(16)}`
            : `${k}=${typeof v === "number" && k === "addr" ? `0x${v.toString(16)}` : v}`,
      )
      .join(",");
  const c = spec.control;
  const ctl = [
    c.wp && "WP",
    c.pse && "PSE",
    c.smep && "SMEP",
    c.smap && "SMAP",
    c.nxe && "NXE",
    c.pke && "PKE",
    c.pks && "PKS",
    c.pkru && `PKRU=0x${c.pkru.toString(16)}`,
    c.pkrs && `PKRS=0x${c.pkrs.toString(16)}`,
  ]
    .filter(Boolean)
    .join("|");
  const a = spec.access;
  return `${spec.mode} cpu=${cpuName} [${ctl || "-"}] ${a.privilege}-${a.kind}${a.ac ? "+AC" : ""} va=0x${spec.va.toString(16)} page=0x${spec.page.toString(16)} levels=${spec.levels.map((l) => `{${bits(l)}}`).join(" ")}`;
}

/** Runs cases against vmmu in one memory, caching roles; the previous case's entries are cleared first. */
export class MatrixRunner {
  readonly physical: GuestPhysical;
  private readonly roles = new Map<string, CpuRole>();
  private readonly w = new Walk();
  private lastEntries: { addr: number; bytes: 4 | 8 }[] = [];
  readonly ramBytes: number;

  constructor(frames = 0x400) {
    this.physical = smallMemory(frames);
    this.ramBytes = frames * 4096;
  }

  isRam = (pa: number): boolean => pa >= 0 && pa < this.ramBytes;

  role(cpu: NamedCpu, mode: OraclePagingMode, control: OracleControl): CpuRole {
    const regs = registersFor(mode, control);
    const key = `${cpu.name}|${regs.cr0}|${regs.cr4}|${regs.efer}|${regs.pkru}|${regs.pkrs}`;
    let role = this.roles.get(key);
    if (!role) {
      role = CpuRole.from(regs, cpu.features);
      this.roles.set(key, role);
    }
    return role;
  }

  /** Runs one case: oracle first, then vmmu; returns both. */
  run(spec: CaseSpec, cpu: NamedCpu): { expected: ExpectedCase; actual: Actual } {
    const expected = expectedWalk(spec, this.isRam);
    for (const e of this.lastEntries) writeEntry(this.physical, e.addr, e.bytes, 0n);
    // Entries in a table that is not RAM (a root outside memory) cannot be written: the walk sees nothing there.
    const inRam = expected.entries.filter((e) => this.isRam(e.addr));
    for (const e of inRam) writeEntry(this.physical, e.addr, e.bytes, e.value);
    this.lastEntries = inRam;
    const role = this.role(cpu, spec.mode, spec.control);
    const actual = this.walk(role, expected.cr3, spec.mode === "32bit" ? 0 : Number(spec.va >> 32n), spec);
    actual.after = expected.entries.map((e) =>
      this.isRam(e.addr) ? (readEntry(this.physical, e.addr, e.bytes) ?? -1n) : e.value,
    );
    return { expected, actual };
  }

  private walkerCache = new Map<CpuRole, GuestWalker>();

  private walk(role: CpuRole, cr3: bigint, vaHi: number, spec: CaseSpec): Actual {
    const actual: Actual = {
      loadOk: true,
      fault: "none",
      errorCode: 0,
      reason: "none",
      faultLevel: 0,
      physical: -1,
      pageSize: 0,
      after: [],
    };
    let walker = this.walkerCache.get(role);
    if (!walker) {
      // A walker needs a loadable CR3 to be created: any RAM frame with zeroed PDPTEs will do.
      walker = cpuWalker(this.physical, role, BigInt(this.ramBytes - 4096));
      this.walkerCache.set(role, walker);
    }
    const load = loadCr3(walker, role, cr3);
    if (!load.ok) {
      actual.loadOk = false;
      return actual;
    }
    const w = this.w;
    const ok = walker.walk(vaHi >>> 0, Number(spec.va & 0xffffffffn), accessBits(spec.access), w);
    actual.fault =
      w.fault === FAULT_NONE
        ? "none"
        : w.fault === FAULT_PAGE
          ? "page"
          : w.fault === FAULT_GP
            ? "gp"
            : "other";
    if (ok !== (w.fault === FAULT_NONE)) actual.fault = "other";
    actual.errorCode = w.fault === FAULT_PAGE ? w.errorCode >>> 0 : 0;
    actual.reason = REASON_NAMES[w.reason];
    actual.faultLevel = w.faultLevel;
    if (ok) {
      actual.physical = w.address;
      actual.pageSize = 2 ** w.pageShift;
    }
    return actual;
  }
}

const hex = (v: number | bigint) => (v < 0 ? `${v}` : `0x${v.toString(16)}`);

/** Differences between the oracle's expectation and vmmu's outcome (empty when they agree). */
export function diffCase(expected: ExpectedCase, actual: Actual): string[] {
  const d: string[] = [];
  const expLoad = expected.load === null || expected.load.ok;
  if (expLoad !== actual.loadOk) {
    d.push(`CR3 load: expected ${expLoad ? "ok" : "#GP"}, vmmu ${actual.loadOk ? "ok" : "#GP"}`);
    return d;
  }
  const e = expected.walk;
  if (e) {
    if (e.fault !== actual.fault) d.push(`fault: expected ${e.fault}, vmmu ${actual.fault}`);
    if (e.errorCode !== actual.errorCode)
      d.push(`error code: expected ${hex(e.errorCode)}, vmmu ${hex(actual.errorCode)}`);
    if (e.reason !== actual.reason) d.push(`reason: expected ${e.reason}, vmmu ${actual.reason}`);
    if (
      (e.reason === "not-present" || e.reason === "reserved-bit" || e.reason === "table-not-in-memory") &&
      e.reason === actual.reason &&
      e.faultLevel !== actual.faultLevel
    )
      d.push(`fault level: expected ${e.faultLevel}, vmmu ${actual.faultLevel}`);
    if (e.fault === "none" && actual.fault === "none") {
      if (e.physical !== actual.physical)
        d.push(`physical: expected ${hex(e.physical)}, vmmu ${hex(actual.physical)}`);
      if (e.pageSize !== actual.pageSize)
        d.push(`page size: expected ${e.pageSize}, vmmu ${actual.pageSize}`);
    }
  }
  for (let i = 0; i < expected.entries.length; i++) {
    if (expected.after[i] !== actual.after[i]) {
      const en = expected.entries[i];
      d.push(
        `entry L${en.level} @${hex(en.addr)}: before ${hex(en.value)}, expected after ${hex(expected.after[i])}, vmmu ${hex(actual.after[i])}`,
      );
    }
  }
  return d;
}

export interface Mismatch {
  case: string;
  diff: string[];
}

/** Runs a batch, returning mismatches (and the number of cases run). */
export function runBatch(
  runner: MatrixRunner,
  cpu: NamedCpu,
  cases: Iterable<CaseSpec>,
): { count: number; mismatches: Mismatch[] } {
  let count = 0;
  const mismatches: Mismatch[] = [];
  for (const spec of cases) {
    count++;
    const { expected, actual } = runner.run(spec, cpu);
    const diff = diffCase(expected, actual);
    if (diff.length > 0) mismatches.push({ case: describeCase(spec, cpu.name), diff });
  }
  return { count, mismatches };
}

/** A readable failure message for the first few mismatches. */
export function formatMismatches(mismatches: readonly Mismatch[], first = 5): string {
  if (mismatches.length === 0) return "";
  const shown = mismatches
    .slice(0, first)
    .map((m) => `  ${m.case}\n    ${m.diff.join("\n    ")}`)
    .join("\n");
  return `${mismatches.length} mismatch(es) vs the SDM oracle; first ${Math.min(first, mismatches.length)}:\n${shown}`;
}
