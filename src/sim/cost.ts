/**
 * The cost model: cycles charged per counted event. The simulator counts events exactly;
 * cycles are only a weighting of those counts, so every default below is a documented,
 * round estimate for a recent x86 server core under KVM, meant for comparing MMUs against
 * each other and against native, not for predicting wall-clock time. Override any of them
 * with a JSON file (`vmmu simulate --cost FILE`, `parseCostModel`).
 *
 *   cycles = tlbHits × tlbHit + tlbMisses × tlbMiss + walkMemoryRefs × walkRef
 *          + Σ exits[k] × exits[k] + guestPageFaults × guestFault
 *          + Σ tlbFlushes[kind] × (tlbFlushByKind[kind] ?? tlbFlush)
 */

import { FLUSH_NAMES } from "../hw/tlb-stats.js";

/** Cycles per exit reason. */
export interface ExitCosts {
  /** EPT violation: VM exit + entry round trip (~1,000 cycles) plus KVM's TDP fault handler. */
  eptViolation: number;
  /** EPT misconfiguration (MMIO SPTE): the round trip and the MMIO fast path. */
  eptMisconfig: number;
  /** AMD nested page fault: as an EPT violation. */
  npf: number;
  /** Shadow paging #PF intercept: round trip, a walk of the guest's tables, shadow entry update. */
  shadowPageFault: number;
  /** Extra, on top of the #PF exit it follows: decoding and emulating a write to a write-protected guest table. */
  emulation: number;
  /** Paravirtual page-table hypercall (lguest-style): round trip and the handler. */
  hypercall: number;
  /** Extra, on top of the exit it follows: dispatching an MMIO access to a device. */
  mmio: number;
  /** MOV to CR3 intercepted (transparent shadow paging) or LHCALL_NEW_PGTABLE (shadow-pv): root lookup or sync. */
  cr3Write: number;
  /** INVLPG intercepted (transparent shadow paging). */
  invlpg: number;
}

export interface CostModel {
  /** An access whose translation the TLB holds. */
  tlbHit: number;
  /** The fixed part of a TLB miss (starting the page-miss handler), beyond its memory references. */
  tlbMiss: number;
  /** One memory reference of a page walk (mostly L1/L2 hits for page-table entries). */
  walkRef: number;
  exits: ExitCosts;
  /** Delivering a #PF to the guest kernel and returning (its handler's own memory accesses are counted as accesses). */
  guestFault: number;
  /** One TLB invalidation operation (INVLPG, MOV CR3, INVPCID, INVEPT...), unless `tlbFlushByKind` names it. */
  tlbFlush: number;
  /** Per-kind overrides of `tlbFlush`, keyed by the names of `FLUSH_NAMES` ("invlpg", "mov-cr3", ...). */
  tlbFlushByKind: Record<string, number>;
}

/** The default cycles. */
export const DEFAULT_COSTS: Readonly<CostModel> = Object.freeze({
  tlbHit: 1,
  tlbMiss: 10,
  walkRef: 25,
  exits: Object.freeze({
    eptViolation: 1800,
    eptMisconfig: 1200,
    npf: 1800,
    shadowPageFault: 2500,
    emulation: 1500,
    hypercall: 1200,
    mmio: 1000,
    cr3Write: 1500,
    invlpg: 1200,
  }),
  guestFault: 500,
  tlbFlush: 100,
  tlbFlushByKind: Object.freeze({}) as Record<string, number>,
});

export const EXIT_KINDS: readonly (keyof ExitCosts)[] = Object.keys(
  DEFAULT_COSTS.exits,
) as (keyof ExitCosts)[];

/** A cost file that is not valid JSON or does not follow the schema. */
export class CostConfigError extends Error {
  override name = "CostConfigError";
}

const TOP_KEYS = ["tlbHit", "tlbMiss", "walkRef", "exits", "guestFault", "tlbFlush", "tlbFlushByKind"];

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function cycles(v: unknown, where: string, what: string): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0)
    throw new CostConfigError(
      `${where}: "${what}" must be a non-negative number of cycles, got ${JSON.stringify(v)}`,
    );
  return v;
}

function unknownKey(where: string, key: string, path: string, known: readonly string[]): never {
  throw new CostConfigError(`${where}: unknown key "${path}${key}" (known: ${known.join(", ")})`);
}

/**
 * A cost model from a JSON value: every key optional (defaults fill the rest); unknown
 * keys, wrong types and negative numbers are errors naming the key. `where` names the
 * source in messages (a file name).
 */
export function costModelFrom(value: unknown, where = "cost model"): CostModel {
  if (!isRecord(value))
    throw new CostConfigError(`${where}: expected a JSON object, got ${JSON.stringify(value)}`);
  const m: CostModel = {
    ...DEFAULT_COSTS,
    exits: { ...DEFAULT_COSTS.exits },
    tlbFlushByKind: {},
  };
  for (const [k, v] of Object.entries(value)) {
    if (k === "$schema" || k === "description") continue;
    if (!TOP_KEYS.includes(k)) unknownKey(where, k, "", TOP_KEYS);
    if (k === "exits") {
      if (!isRecord(v))
        throw new CostConfigError(`${where}: "exits" must be an object of cycles per exit reason`);
      for (const [e, c] of Object.entries(v)) {
        if (!(EXIT_KINDS as readonly string[]).includes(e)) unknownKey(where, e, "exits.", EXIT_KINDS);
        m.exits[e as keyof ExitCosts] = cycles(c, where, `exits.${e}`);
      }
    } else if (k === "tlbFlushByKind") {
      if (!isRecord(v))
        throw new CostConfigError(`${where}: "tlbFlushByKind" must be an object of cycles per flush kind`);
      for (const [f, c] of Object.entries(v)) {
        if (!FLUSH_NAMES.includes(f)) unknownKey(where, f, "tlbFlushByKind.", FLUSH_NAMES);
        m.tlbFlushByKind[f] = cycles(c, where, `tlbFlushByKind.${f}`);
      }
    } else (m as unknown as Record<string, number>)[k] = cycles(v, where, k);
  }
  return m;
}

/** Parses the text of a JSON cost file (see `costModelFrom`). */
export function parseCostModel(text: string, where = "cost file"): CostModel {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new CostConfigError(`${where}: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  return costModelFrom(value, where);
}

/** What the cost model charges for. */
export interface CostCounts {
  tlbHits: number;
  tlbMisses: number;
  walkMemoryRefs: number;
  exits: Partial<Record<keyof ExitCosts, number>>;
  guestPageFaults: number;
  /** Invalidations by FLUSH_NAMES kind. */
  tlbFlushes: Record<string, number>;
}

/** Cycles split by cause; `total` is their sum. */
export interface CycleBreakdown {
  /** TLB hits and the fixed part of misses. */
  tlb: number;
  /** Page-walk memory references. */
  walks: number;
  /** VM exits (and hypercalls). */
  exits: number;
  guestFaults: number;
  flushes: number;
  total: number;
}

/** The causes of `CycleBreakdown`, in chart order. */
export const CYCLE_CAUSES = ["tlb", "walks", "exits", "guestFaults", "flushes"] as const;

export function cyclesOf(c: CostCounts, m: CostModel): CycleBreakdown {
  const tlb = c.tlbHits * m.tlbHit + c.tlbMisses * m.tlbMiss;
  const walks = c.walkMemoryRefs * m.walkRef;
  let exits = 0;
  for (const k of EXIT_KINDS) exits += (c.exits[k] ?? 0) * m.exits[k];
  const guestFaults = c.guestPageFaults * m.guestFault;
  let flushes = 0;
  for (const [kind, n] of Object.entries(c.tlbFlushes)) flushes += n * (m.tlbFlushByKind[kind] ?? m.tlbFlush);
  return { tlb, walks, exits, guestFaults, flushes, total: tlb + walks + exits + guestFaults + flushes };
}
