/**
 * The runner: one `Program` on a fresh VM and guest OS per MMU configuration, counters
 * gathered from every component, cycles from the cost model, and a native baseline.
 *
 * The parts: (i) MMU configuration names; (ii) `runProgram`, one configuration (the unit a
 * parameter sweep calls); (iii) counters: snapshots after boot (and at a `measure` op),
 * differences at the end; (iv) `simulate`, several MMUs on one program, digests compared,
 * the native estimate and overheads.
 *
 * The native baseline. There is no native mode in the VM, so native is modelled from the
 * TDP (EPT, 4-level) run of the same program and configuration, whose TLB sees exactly the
 * guest's translations and the guest's own invalidations (nothing is write-protected or
 * intercepted): native keeps its accesses, TLB hits and misses, guest page faults and
 * guest-initiated TLB flushes; it makes one 1-D walk per TLB miss of the guest paging
 * mode's depth (2 for 32-bit and PAE, whose PDPTEs are registers; 4; 5) and no VM exits.
 * The depth is exact for walks that end at a 4 KiB page and an upper bound for walks that
 * end early (huge pages, faults). When the MMUs simulated do not include "tdp", one more
 * TDP run is made for the baseline and reported only as `native`.
 */

import { DEFAULT_CPU_MODEL } from "../arch/cpu.js";
import type { GuestPagingMode } from "../guest/layout.js";
import { LguestPagingOps } from "../guest/lguest-ops.js";
import { GuestIntegrityError } from "../guest/model.js";
import { GuestOs, type GuestStats, type TouchKind } from "../guest/os.js";
import {
  DEFAULT_TLB_PRESET,
  formatTlbSpec,
  parseTlbSpec,
  TLB_SIZES,
  type TlbConfig,
} from "../hw/tlb-config.js";
import { FLUSH_NAMES } from "../hw/tlb-stats.js";
import { GuestStoppedError, type ShadowMmuOptions } from "../mmu/shadow/shadow-mmu.js";
import type { ExitCounts } from "../vm/vcpu.js";
import { Vm } from "../vm/vm.js";
import { type CostModel, type CycleBreakdown, cyclesOf, DEFAULT_COSTS, type ExitCosts } from "./cost.js";
import { type Program, REGION_DATA, REGION_STACK, REGION_TEXT, type SimOp, TOUCH_KINDS } from "./program.js";

// ---------------------------------------------------------------------------------------
// (i) MMU configurations

/**
 * Host MMU configurations by name:
 *   tdp        EPT, 4 levels        tdp-ept5   EPT, 5 levels
 *   tdp-npt    AMD NPT, 4 levels    tdp-npt5   NPT, 5 levels
 *   shadow     transparent shadow paging (KVM-style: guest tables write-protected)
 *   shadow-pv  paravirtual shadow paging (lguest-style: page-table hypercalls)
 */
export type MmuName = "tdp" | "tdp-ept5" | "tdp-npt" | "tdp-npt5" | "shadow" | "shadow-pv";

export const MMU_NAMES: readonly MmuName[] = [
  "tdp",
  "tdp-ept5",
  "tdp-npt",
  "tdp-npt5",
  "shadow",
  "shadow-pv",
];

/** What `--mmu all` runs. */
export const ALL_MMUS: readonly MmuName[] = ["tdp", "tdp-ept5", "tdp-npt", "shadow", "shadow-pv"];

export const GUEST_PAGING_MODES: readonly GuestPagingMode[] = ["32bit", "pae", "4level", "5level"];

/** Parses "tdp,shadow" or "all"; throws a RangeError naming an unknown MMU. */
export function parseMmuList(list: string): MmuName[] {
  if (list.trim() === "all") return [...ALL_MMUS];
  const names = list
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (names.length === 0) throw new RangeError("no MMU named");
  for (const n of names)
    if (!(MMU_NAMES as readonly string[]).includes(n))
      throw new RangeError(`unknown MMU "${n}" (known: ${MMU_NAMES.join(", ")}, or all)`);
  return [...new Set(names)] as MmuName[];
}

/** One configuration: what varies between runs of the same program. */
export interface RunConfig {
  mmu: MmuName;
  /** Guest paging mode (default "4level"). */
  guestPaging?: GuestPagingMode;
  /** TLB of every vCPU: a preset, a spec string (docs/TLB.md) or a TlbConfig (default "skylake-l1d"). */
  tlb?: string | TlbConfig;
  /** Optional hardware caches (entries; 0 or absent = off). */
  caches?: { pagingStructure?: number; nestedTlb?: number };
  /** CPU model (default "intel-sapphirerapids"); the same for every MMU so the guest sees the same CPU. */
  cpu?: string;
  /** PCIDs in 4/5-level guests (default true). */
  pcid?: boolean;
  /** Back guest RAM with 2 MiB host pages and let TDP map 2 MiB pages (default true). */
  hostHugePages?: boolean;
  /** Shadow MMU options (page bound, unsync, prefetch...). */
  shadow?: ShadowMmuOptions;
  /** Run vm.check() and the guest's audit every this many operations and at the end (0: never). */
  checkEvery?: number;
}

export interface RunOptions {
  /** Cycles per event (default DEFAULT_COSTS). */
  costs?: CostModel;
  /** Called every 4096 operations with the count so far. */
  onProgress?: (ops: number) => void;
}

/** Exit counts: the vCPU's reasons plus the shadow-paging intercepts derived from the guest's counts. */
export type ExitTotals = Record<keyof ExitCosts, number>;

/** The results of one run (all counters cover the measured part: after boot, or after a `measure` op). */
export interface RunResult {
  mmu: MmuName;
  guestPaging: GuestPagingMode;
  /** The TLB as a spec string. */
  tlb: string;
  caches: { pagingStructure: number; nestedTlb: number };
  hostHugePages: boolean;
  /** Operations executed (all of them, warm-up included). */
  ops: number;
  /** Touch operations measured (the program's own user accesses). */
  userAccesses: number;
  /** Every access the vCPUs made: user touches and the guest kernel's own (page tables, clearing pages). */
  accesses: number;
  tlbHits: number;
  tlbMisses: number;
  tlbMissRate: number;
  /** TLB hits by the page-size array that answered. */
  tlbHitsBySize: Record<string, number>;
  /** TLB fills after walks by page size (misses by page size, once the walk knows it). */
  tlbFillsBySize: Record<string, number>;
  /** Hardware walks, including walks retried after a VM exit. */
  walks: number;
  walkMemoryRefs: number;
  completedWalks: number;
  completedWalkRefs: number;
  /** completedWalkRefs / completedWalks (0 without walks): 4 for 1-D 4-level, 24 for 4-on-4 2-D, nothing cached. */
  refsPerCompletedWalk: number;
  exits: ExitTotals;
  /** VM exits: the exit reasons that are exits (mmio and emulation are outcomes of a #PF/EPT exit, not counted again). */
  exitsTotal: number;
  /** Faults delivered to the guest (#PF and #GP). */
  guestPageFaults: number;
  /** The guest kernel's counters (GuestStats), measured part. */
  guest: GuestStats;
  /** Most host frames the MMU's tables held at once (shadow pages or TDP tables), and in bytes. */
  hostTableFrames: number;
  hostTableBytes: number;
  /** The host MMU's own counters. */
  mmuStats: Record<string, number>;
  /** TLB invalidations by kind (non-zero kinds only). */
  tlbFlushes: Record<string, number>;
  cycles: number;
  cyclesByCause: CycleBreakdown;
  /** cycles / native cycles - 1; null when there is no baseline (runProgram alone). */
  overheadVsNative: number | null;
  /** The guest-visible digest: equal across MMUs for the same program. */
  digest: string;
  /** Audits run (vm.check() and the guest's audit) and what they found. */
  checks: number;
  problems: string[];
}

/**
 * A run that cannot go on, with the operation where it stopped: a guest integrity failure,
 * a stopped paravirtual guest, a guest out of memory, or a program naming a handle it never made.
 */
export class SimulationError extends Error {
  override name = "SimulationError";
}

// ---------------------------------------------------------------------------------------
// (iii) Counters

type Snapshot = Map<string, number>;

const EXIT_REASONS: readonly (keyof ExitCounts)[] = [
  "eptViolation",
  "eptMisconfig",
  "npf",
  "shadowPageFault",
  "emulation",
  "hypercall",
  "mmio",
];
/** Exit reasons that are VM exits of their own (the others refine one of these). */
const EXIT_EVENTS: readonly (keyof ExitTotals)[] = [
  "eptViolation",
  "eptMisconfig",
  "npf",
  "shadowPageFault",
  "hypercall",
  "cr3Write",
  "invlpg",
];
/** Invalidations the guest makes itself (kept in the native baseline). */
const GUEST_FLUSHES = new Set([
  "invlpg",
  "page-fault",
  "mov-cr0",
  "mov-cr3",
  "mov-cr4",
  "invpcid-address",
  "invpcid-single",
  "invpcid-all",
  "invpcid-all-non-global",
]);

function snapshot(vm: Vm, os: GuestOs): Snapshot {
  const s: Snapshot = new Map();
  const add = (k: string, v: number) => s.set(k, (s.get(k) ?? 0) + v);
  for (const v of vm.vcpus) {
    for (const [k, n] of Object.entries(v.stats)) add(k, n);
    for (const k of EXIT_REASONS) add(`exit.${k}`, v.exits[k]);
    const t = v.tlb.stats;
    for (let i = 0; i < 3; i++) {
      add(`hit.${TLB_SIZES[i]}`, t.hits[i]);
      add(`fill.${TLB_SIZES[i]}`, t.inserts[i]);
    }
    for (let i = 0; i < FLUSH_NAMES.length; i++) add(`flush.${FLUSH_NAMES[i]}`, t.flushes[i]);
  }
  for (const [k, n] of Object.entries(os.stats)) add(`guest.${k}`, n);
  for (const [k, n] of Object.entries(vm.hostMmu.stats as Record<string, number>)) add(`mmu.${k}`, n);
  return s;
}

function diff(end: Snapshot, start: Snapshot): Snapshot {
  const d: Snapshot = new Map();
  for (const [k, v] of end) d.set(k, v - (start.get(k) ?? 0));
  return d;
}

function prefixed(s: Snapshot, prefix: string, nonZero = false): Record<string, number> {
  const r: Record<string, number> = {};
  for (const [k, v] of s) if (k.startsWith(prefix) && (!nonZero || v !== 0)) r[k.slice(prefix.length)] = v;
  return r;
}

// ---------------------------------------------------------------------------------------
// (ii) One run

interface Bound {
  pid: number;
  /** Region handle → where it is. */
  regions: Map<number, Region>;
}

interface Region {
  base: bigint;
  /** `base` as a virtual page number (touches avoid BigInt). */
  vpn: number;
  pages: number;
}

const regionAt = (base: bigint, pages: number): Region => ({ base, vpn: Number(base >> 12n), pages });

/** Runs `program` under one configuration on a fresh VM and guest. */
export function runProgram(program: Program, config: RunConfig, o: RunOptions = {}): RunResult {
  const mode = config.guestPaging ?? "4level";
  const mmu = config.mmu;
  if (!(MMU_NAMES as readonly string[]).includes(mmu))
    throw new RangeError(`unknown MMU "${mmu as string}" (known: ${MMU_NAMES.join(", ")})`);
  const hostHuge = config.hostHugePages ?? true;
  const tlb = typeof config.tlb === "object" ? config.tlb : parseTlbSpec(config.tlb ?? DEFAULT_TLB_PRESET);
  const caches = {
    pagingStructure: config.caches?.pagingStructure ?? 0,
    nestedTlb: config.caches?.nestedTlb ?? 0,
  };
  const ramPages = Math.ceil(Math.max(program.ramPages, 4096) / 512) * 512;
  const tdp = mmu.startsWith("tdp");
  const vm = new Vm({
    cpu: config.cpu ?? DEFAULT_CPU_MODEL,
    hostMemory: ramPages * 4096 + (96 << 20),
    mmu: tdp ? "tdp" : (mmu as "shadow" | "shadow-pv"),
    tdp: tdp
      ? {
          format: mmu.startsWith("tdp-npt") ? "npt" : "ept",
          levels: mmu.endsWith("5") ? 5 : 4,
          hugePages: hostHuge,
        }
      : undefined,
    shadow: tdp ? undefined : config.shadow,
    tlb,
    caches,
  });
  vm.addMemslot({
    id: 0,
    baseGfn: 0,
    pages: ramPages,
    hvaPage: 0x100000,
    hostHugePages: hostHuge ? 9 : undefined,
  });
  const pcid = (config.pcid ?? true) && (mode === "4level" || mode === "5level") && vm.cpu.pcid;
  const os = new GuestOs(vm, {
    mode,
    cpus: program.cpus,
    pcid,
    ops: mmu === "shadow-pv" ? (layout) => new LguestPagingOps(layout) : undefined,
  });
  const l = os.layout;
  const standard = new Map<number, Region>([
    [REGION_TEXT, regionAt(BigInt(l.textVpn) << 12n, 16)],
    [REGION_DATA, regionAt(BigInt(l.textVpn + 16) << 12n, 16)],
    [REGION_STACK, regionAt(BigInt(l.stackTopVpn - 31) << 12n, 32)],
  ]);
  const procs = new Map<number, Bound>();
  const proc = (h: number, op: number): Bound => {
    const b = procs.get(h);
    if (!b)
      throw new SimulationError(
        `${program.name}: operation ${op} names process handle ${h}, which does not exist`,
      );
    return b;
  };
  const region = (b: Bound, h: number, op: number) => {
    const r = h < 0 ? standard.get(h) : b.regions.get(h);
    if (!r)
      throw new SimulationError(
        `${program.name}: operation ${op} names region handle ${h}, which process ${b.pid} does not have`,
      );
    return r;
  };

  const checkEvery = config.checkEvery ?? 0;
  const problems: string[] = [];
  let checks = 0;
  const audit = (where: string) => {
    checks++;
    for (const p of vm.check()) problems.push(`${where}: ${p}`);
    for (const p of os.audit()) problems.push(`${where}: guest audit: ${p}`);
  };

  let start = snapshot(vm, os);
  let startUser = 0;
  let peakTables = vm.hostMmu.tableFrames;
  let userAccesses = 0;
  let n = 0;
  // The binding of the last touch's (process, region) handles (see `touch`).
  let lastProcHandle = Number.NaN;
  let lastRegionHandle = Number.NaN;
  let lastPid = 0;
  let lastRegion: Region | undefined;
  /** The access of a `touches` batch being run. */
  let batchIndex = 0;
  const env = { layout: l };
  for (const op of program.ops(env)) {
    try {
      step(op);
    } catch (e) {
      if (e instanceof GuestIntegrityError || e instanceof GuestStoppedError)
        throw new SimulationError(
          `${program.name} under ${mmu}: operation ${n} (${describe(op)}): ${e.message}`,
        );
      throw e;
    }
    // A batch did its own bookkeeping, one operation per access.
    if (op.op !== "touches") afterOp();
  }
  peakTables = Math.max(peakTables, vm.hostMmu.tableFrames);
  if (checkEvery > 0) audit("at the end");
  o.onProgress?.(n);

  /** An operation for an error message (a batch as the access that failed). */
  function describe(op: SimOp): string {
    if (op.op !== "touches") return JSON.stringify(op);
    const i = batchIndex;
    const region = typeof op.region === "number" ? op.region : op.region[i];
    return `touches access ${i}: proc ${op.proc}, region ${region}, offset ${op.offset[i]}, kind ${TOUCH_KINDS[op.kind[i]]}`;
  }

  /** Bookkeeping after every operation (a batch: after each of its accesses). */
  function afterOp(): void {
    n++;
    if ((n & 255) === 0) {
      const t = vm.hostMmu.tableFrames;
      if (t > peakTables) peakTables = t;
      if ((n & 4095) === 0) o.onProgress?.(n);
    }
    if (checkEvery > 0 && n % checkEvery === 0) audit(`after operation ${n}`);
  }

  function touch(
    procHandle: number,
    regionHandle: number,
    offset: number,
    kind: TouchKind,
    value: number | undefined,
    cpu: number | undefined,
  ): void {
    // Programs touch the same region many times in a row: the binding of the last
    // (process, region) pair is kept until an operation that may change it.
    if (procHandle !== lastProcHandle || regionHandle !== lastRegionHandle) {
      const b = proc(procHandle, n);
      lastRegion = region(b, regionHandle, n);
      lastPid = b.pid;
      lastProcHandle = procHandle;
      lastRegionHandle = regionHandle;
    }
    const r = lastRegion!;
    if (!(offset >= 0 && offset < r.pages * 4096) || (offset & 3) !== 0 || Math.floor(offset) !== offset)
      throw new SimulationError(
        `${program.name}: operation ${n}: offset ${offset} is not an aligned word of region ${regionHandle}`,
      );
    if (kind === "write") value ??= Math.imul(n + 1, 0x9e3779b1) >>> 0;
    else value = 0;
    os.touchPage(lastPid, r.vpn + Math.floor(offset / 4096), offset & 0xfff, kind, value, cpu);
    userAccesses++;
  }

  function step(op: SimOp): void {
    if (op.op !== "touch" && op.op !== "touches") lastProcHandle = Number.NaN;
    switch (op.op) {
      case "touch":
        touch(op.proc, op.region, op.offset, op.kind, op.value, op.cpu);
        return;
      case "touches": {
        const count = op.count ?? op.offset.length;
        if (!Number.isSafeInteger(count) || count < 0 || count > op.offset.length || count > op.kind.length)
          throw new SimulationError(
            `${program.name}: operation ${n}: a touches batch of ${count} accesses has ${op.offset.length} offsets and ${op.kind.length} kinds`,
          );
        const regions = typeof op.region === "number" ? null : op.region;
        if (regions !== null && regions.length < count)
          throw new SimulationError(
            `${program.name}: operation ${n}: a touches batch of ${count} accesses has ${regions.length} regions`,
          );
        // Each access is one operation: n and the per-operation bookkeeping advance per access.
        for (let i = 0; i < count; i++) {
          batchIndex = i;
          const kind = TOUCH_KINDS[op.kind[i]];
          if (kind === undefined)
            throw new SimulationError(
              `${program.name}: operation ${n}: touch kind ${op.kind[i]} is not 0, 1 or 2`,
            );
          touch(
            op.proc,
            regions === null ? (op.region as number) : regions[i],
            op.offset[i],
            kind,
            undefined,
            op.cpu,
          );
          afterOp();
        }
        return;
      }
      case "spawn":
      case "fork": {
        if (procs.has(op.proc))
          throw new SimulationError(`${program.name}: operation ${n}: process handle ${op.proc} is in use`);
        const parent = op.op === "fork" ? proc(op.parent, n) : null;
        const r = parent ? os.fork(parent.pid) : os.spawn();
        if (!r.ok)
          throw new SimulationError(`${program.name}: operation ${n} (${op.op}): the guest is out of memory`);
        procs.set(op.proc, { pid: r.pid, regions: new Map(parent?.regions) });
        return;
      }
      case "exec": {
        const b = proc(op.proc, n);
        os.exec(b.pid);
        b.regions.clear();
        return;
      }
      case "exit":
        os.exit(proc(op.proc, n).pid);
        procs.delete(op.proc);
        return;
      case "mmap": {
        const b = proc(op.proc, n);
        const at = op.atVpn === undefined ? undefined : BigInt(op.atVpn) << 12n;
        const r = os.mmap(b.pid, op.pages * 4096, op.prot, { huge: op.huge, at });
        if (!r.ok)
          throw new SimulationError(`${program.name}: operation ${n} (mmap): no room in the address space`);
        b.regions.set(op.region, regionAt(r.va, op.pages));
        return;
      }
      case "munmap": {
        const b = proc(op.proc, n);
        const r = region(b, op.region, n);
        os.munmap(b.pid, r.base, r.pages * 4096);
        b.regions.delete(op.region);
        return;
      }
      case "mprotect": {
        const b = proc(op.proc, n);
        const r = region(b, op.region, n);
        os.mprotect(b.pid, r.base, r.pages * 4096, op.prot);
        return;
      }
      case "switch":
        os.switchTo(proc(op.proc, n).pid, op.cpu);
        return;
      case "age":
        os.age(proc(op.proc, n).pid);
        return;
      case "measure":
        start = snapshot(vm, os);
        startUser = userAccesses;
        peakTables = vm.hostMmu.tableFrames;
        return;
    }
  }

  const d = diff(snapshot(vm, os), start);
  const g = (k: string) => d.get(k) ?? 0;
  const guest = prefixed(d, "guest.") as unknown as GuestStats;
  const exits = {} as ExitTotals;
  for (const k of EXIT_REASONS) exits[k] = g(`exit.${k}`);
  // Intercepts the vCPU model does not count as exits: under transparent shadow paging MOV
  // CR3 (a context switch, or the MOV CR3 of a full flush) and INVLPG exit; under shadow-pv
  // the root switch is LHCALL_NEW_PGTABLE (its INVLPGs and flushes are counted hypercalls).
  exits.cr3Write =
    mmu === "shadow" ? guest.cr3Writes + guest.fullFlushes : mmu === "shadow-pv" ? guest.cr3Writes : 0;
  exits.invlpg = mmu === "shadow" ? guest.invlpg : 0;
  let exitsTotal = 0;
  for (const k of EXIT_EVENTS) exitsTotal += exits[k];
  const tlbFlushes = prefixed(d, "flush.", true);
  const tlbHits = g("tlbHits");
  const tlbMisses = g("tlbMisses");
  const counts = {
    tlbHits,
    tlbMisses,
    walkMemoryRefs: g("walkRefs"),
    exits,
    guestPageFaults: g("guestFaults"),
    tlbFlushes,
  };
  const costs = o.costs ?? DEFAULT_COSTS;
  const cyclesByCause = cyclesOf(counts, costs);
  const result: RunResult = {
    mmu,
    guestPaging: mode,
    tlb: formatTlbSpec(tlb),
    caches,
    hostHugePages: hostHuge,
    ops: n,
    userAccesses: userAccesses - startUser,
    accesses: g("accesses"),
    tlbHits,
    tlbMisses,
    tlbMissRate: tlbHits + tlbMisses > 0 ? tlbMisses / (tlbHits + tlbMisses) : 0,
    tlbHitsBySize: prefixed(d, "hit."),
    tlbFillsBySize: prefixed(d, "fill."),
    walks: g("walks"),
    walkMemoryRefs: g("walkRefs"),
    completedWalks: g("completedWalks"),
    completedWalkRefs: g("completedWalkRefs"),
    refsPerCompletedWalk: g("completedWalks") > 0 ? g("completedWalkRefs") / g("completedWalks") : 0,
    exits,
    exitsTotal,
    guestPageFaults: g("guestFaults"),
    guest,
    hostTableFrames: peakTables,
    hostTableBytes: peakTables * 4096,
    mmuStats: prefixed(d, "mmu."),
    tlbFlushes,
    cycles: cyclesByCause.total,
    cyclesByCause,
    overheadVsNative: null,
    digest: os.digest(),
    checks,
    problems,
  };
  vm.destroy();
  return result;
}

// ---------------------------------------------------------------------------------------
// (iv) Several MMUs, the native baseline

/** The native estimate (see the file comment). */
export interface NativeEstimate {
  /** The run it was derived from. */
  source: MmuName;
  accesses: number;
  tlbHits: number;
  tlbMisses: number;
  walks: number;
  /** Guest walk depth: 2 (32-bit, PAE), 4 or 5. */
  refsPerWalk: number;
  walkMemoryRefs: number;
  guestPageFaults: number;
  tlbFlushes: Record<string, number>;
  cycles: number;
  cyclesByCause: CycleBreakdown;
}

/** Native walk depth per guest paging mode (PAE's PDPTEs are loaded with CR3, not walked). */
export const NATIVE_WALK_DEPTH: Readonly<Record<GuestPagingMode, number>> = {
  "32bit": 2,
  pae: 2,
  "4level": 4,
  "5level": 5,
};

/** The native estimate from a TDP run of the same program and configuration. */
export function nativeFrom(tdp: RunResult, costs: CostModel = DEFAULT_COSTS): NativeEstimate {
  const depth = NATIVE_WALK_DEPTH[tdp.guestPaging];
  const tlbFlushes: Record<string, number> = {};
  for (const [k, v] of Object.entries(tdp.tlbFlushes)) if (GUEST_FLUSHES.has(k)) tlbFlushes[k] = v;
  const counts = {
    tlbHits: tdp.tlbHits,
    tlbMisses: tdp.tlbMisses,
    walkMemoryRefs: tdp.tlbMisses * depth,
    exits: {},
    guestPageFaults: tdp.guestPageFaults,
    tlbFlushes,
  };
  const cyclesByCause = cyclesOf(counts, costs);
  return {
    source: tdp.mmu,
    accesses: tdp.accesses,
    tlbHits: tdp.tlbHits,
    tlbMisses: tdp.tlbMisses,
    walks: tdp.tlbMisses,
    refsPerWalk: depth,
    walkMemoryRefs: counts.walkMemoryRefs,
    guestPageFaults: tdp.guestPageFaults,
    tlbFlushes,
    cycles: cyclesByCause.total,
    cyclesByCause,
  };
}

export interface SimulateOptions extends Omit<RunConfig, "mmu"> {
  /** MMUs to run, in report order (default ["tdp", "shadow", "shadow-pv"]). */
  mmus?: readonly MmuName[];
  costs?: CostModel;
  /** The seed the program was made with (recorded in the report; the program is already seeded). */
  seed?: number;
  /** The scale the program was made with (recorded in the report). */
  scale?: number;
  /** Progress: the run (0-based) of how many, its MMU, operations so far. */
  onProgress?: (e: { run: number; runs: number; mmu: string; ops: number; totalOps?: number }) => void;
}

export interface SimulationReport {
  schemaVersion: 1;
  workload: string;
  seed: number | null;
  scale: number | null;
  guestPaging: GuestPagingMode;
  /** The TLB of every run, as a spec string. */
  tlb: string;
  costs: CostModel;
  runs: RunResult[];
  native: NativeEstimate;
  /** Whether every run's digest is the same. */
  digestsAgree: boolean;
  /** Audit findings and digest mismatches, across runs. */
  problems: string[];
}

/** Runs `program` under each MMU with the same configuration; compares digests; adds the native baseline. */
export function simulate(program: Program, o: SimulateOptions = {}): SimulationReport {
  const mmus = o.mmus ?? ["tdp", "shadow", "shadow-pv"];
  if (mmus.length === 0) throw new RangeError("no MMU to simulate");
  const costs = o.costs ?? DEFAULT_COSTS;
  const { mmus: _m, costs: _c, onProgress, seed, scale, ...config } = o;
  const needBaseline = !mmus.includes("tdp");
  const plan: MmuName[] = needBaseline ? [...mmus, "tdp"] : [...mmus];
  const totalOps = o.onProgress ? program.opCount : undefined;
  const results = plan.map((mmu, i) =>
    runProgram(
      program,
      { ...config, mmu },
      {
        costs,
        onProgress: onProgress && ((ops) => onProgress({ run: i, runs: plan.length, mmu, ops, totalOps })),
      },
    ),
  );
  const baseline = results[plan.indexOf("tdp")];
  const native = nativeFrom(baseline, costs);
  const runs = needBaseline ? results.slice(0, -1) : results;
  for (const r of runs) r.overheadVsNative = native.cycles > 0 ? r.cycles / native.cycles - 1 : 0;
  const problems: string[] = [];
  for (const r of runs) for (const p of r.problems) problems.push(`${r.mmu}: ${p}`);
  const digestsAgree = results.every((r) => r.digest === results[0].digest);
  if (!digestsAgree)
    problems.push(`guest digests differ: ${results.map((r) => `${r.mmu} ${r.digest}`).join(", ")}`);
  return {
    schemaVersion: 1,
    workload: program.name,
    seed: seed ?? null,
    scale: scale ?? null,
    guestPaging: o.guestPaging ?? "4level",
    tlb: results[0].tlb,
    costs,
    runs,
    native,
    digestsAgree,
    problems,
  };
}
