/**
 * Parameter sweeps: a grid of configurations, each run once with `runProgram`, results kept
 * one file per point so a sweep can be interrupted, resumed, split into shards and merged.
 *
 * This file is the pure part (no file system, no threads): the grid file's schema and its
 * validation (`sweepConfigFrom`, `parseSweepConfig`), expanding the grid into points with
 * stable ids (`expandGrid`), sharding (`shardOf`), checking a stored point record
 * (`pointRecordProblem`), and assembling records into the results document, CSV and chart
 * (`assembleSweep`, `sweepCsv`, `sweepSvg`). sweep-run.ts runs points on worker threads and
 * writes the files; sweep-merge.ts combines shard directories.
 *
 * Determinism. A point's id is a hash of its parameters only (not of its position, the
 * shard, the job count or the time), and each run boots a fresh VM, so every point's record
 * is the same however the sweep is scheduled. Points are ordered by id; `--shard K/N` takes
 * the points whose index in that order is ≡ K-1 (mod N).
 *
 * Cycles. Point records hold the counters of `runProgram` priced with the default costs; the
 * results are re-priced with the sweep's cost model when they are assembled, so a changed
 * cost model never needs a re-run (point ids do not depend on it).
 */

import { createHash } from "node:crypto";
import { CPU_MODELS, DEFAULT_CPU_MODEL } from "../arch/cpu.js";
import type { GuestPagingMode } from "../guest/layout.js";
import { DEFAULT_TLB_PRESET, formatTlbSpec, parseTlbSpec, TlbConfigError } from "../hw/tlb-config.js";
import { CostConfigError, type CostModel, costModelFrom, cyclesOf, DEFAULT_COSTS } from "./cost.js";
import { formatSvg, grouped } from "./report.js";
import {
  ALL_MMUS,
  GUEST_PAGING_MODES,
  MMU_NAMES,
  type MmuName,
  type NativeEstimate,
  nativeFrom,
  type RunResult,
  runProgram,
  type SimulationReport,
} from "./runner.js";
import { WORKLOADS, workload } from "./workloads.js";

// ---------------------------------------------------------------------------------------
// The grid file

/** A grid file that is not valid JSON or does not follow the schema. */
export class SweepConfigError extends Error {
  override name = "SweepConfigError";
}

/** Host page size backing guest RAM: "2m" (2 MiB pages, TDP huge pages; the default) or "4k". */
export type HostPages = "2m" | "4k";

export interface CacheSizes {
  pagingStructure: number;
  nestedTlb: number;
}

/** A validated grid: every axis non-empty, every value known, no duplicates. */
export interface SweepConfig {
  /** A name for reports (default: none). */
  name: string | null;
  workloads: string[];
  /** The MMU axis; with `native`, "tdp" is included (added last when the file did not name it). */
  mmus: MmuName[];
  /** TLB specs, normalised to full spec strings (docs/TLB.md). */
  tlbs: string[];
  guestPaging: GuestPagingMode[];
  seeds: number[];
  scales: number[];
  hostPages: HostPages[];
  caches: CacheSizes[];
  /** Fixed for the whole grid. */
  pcid: boolean;
  cpu: string;
  checkEvery: number;
  /** Add "tdp" to the MMU axis so that every configuration has a native baseline (default true). */
  native: boolean;
  /** Cycles per event: used when results are assembled, not part of point ids. */
  costs: CostModel;
}

/** The keys of a grid file, with what each must be. */
const KEYS: Record<string, string> = {
  $schema: "ignored",
  description: "ignored",
  name: "a string",
  workloads: `a non-empty array of workload names (${WORKLOADS.map((w) => w.name).join(", ")})`,
  mmus: `"all" or a non-empty array of MMU names (${MMU_NAMES.join(", ")})`,
  tlbs: "a non-empty array of TLB presets or specs (docs/TLB.md)",
  guestPaging: `a non-empty array of paging modes (${GUEST_PAGING_MODES.join(", ")})`,
  seeds: "a non-empty array of non-negative integers",
  scales: "a non-empty array of numbers in (0, 1000]",
  hostPages: 'a non-empty array of "2m" and/or "4k"',
  caches: "a non-empty array of { pagingStructure, nestedTlb } (entries: 0 or a power of two)",
  pcid: "a boolean",
  cpu: `a CPU model (${Object.keys(CPU_MODELS).join(", ")})`,
  checkEvery: "a non-negative integer",
  native: "a boolean",
  costs: "a cost model object (docs/SIMULATOR.md) or the name of a cost file",
};

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * A validated grid from a JSON value. Required: `workloads`, `mmus`; every other axis has a
 * one-value default (`tlbs` ["skylake-l1d"], `guestPaging` ["4level"], `seeds` [1],
 * `scales` [1], `hostPages` ["2m"], `caches` [{0, 0}]). Unknown keys, wrong types, empty
 * axes, duplicate values and unknown names are errors naming the key. `readCostFile` loads
 * `costs` when it is a file name (relative names are the caller's business).
 */
export function sweepConfigFrom(
  value: unknown,
  where = "sweep config",
  readCostFile?: (file: string) => unknown,
): SweepConfig {
  const fail = (msg: string): never => {
    throw new SweepConfigError(`${where}: ${msg}`);
  };
  if (!isRecord(value)) return fail(`expected a JSON object, got ${JSON.stringify(value)}`);
  for (const k of Object.keys(value))
    if (!(k in KEYS)) fail(`unknown key "${k}" (known: ${Object.keys(KEYS).slice(2).join(", ")})`);
  const wrong = (key: string, got: unknown): never =>
    fail(`"${key}" must be ${KEYS[key]}, got ${JSON.stringify(got)}`);

  /** An axis: a non-empty array, each element checked by `item`, no duplicates (after normalising). */
  const axis = <T>(key: string, dflt: T[] | undefined, item: (v: unknown, at: string) => T): T[] => {
    const v = value[key];
    if (v === undefined) {
      if (dflt === undefined) fail(`missing "${key}": ${KEYS[key]}`);
      return dflt as T[];
    }
    if (!Array.isArray(v)) return wrong(key, v);
    if (v.length === 0) fail(`"${key}" is empty: an axis needs at least one value`);
    const out: T[] = [];
    const seen = new Set<string>();
    v.forEach((x, i) => {
      const t = item(x, `${key}[${i}]`);
      const s = JSON.stringify(t);
      if (seen.has(s)) fail(`"${key}[${i}]": duplicate value ${JSON.stringify(x)}`);
      seen.add(s);
      out.push(t);
    });
    return out;
  };
  const oneOf = <T extends string>(known: readonly T[], what: string) => {
    return (x: unknown, at: string): T => {
      if (typeof x !== "string") return fail(`"${at}" must be a string, got ${JSON.stringify(x)}`);
      if (!(known as readonly string[]).includes(x))
        fail(`"${at}": unknown ${what} "${x}" (known: ${known.join(", ")})`);
      return x as T;
    };
  };
  const nonNegInt = (x: unknown, at: string): number => {
    if (typeof x !== "number" || !Number.isSafeInteger(x) || x < 0)
      fail(`"${at}" must be a non-negative integer, got ${JSON.stringify(x)}`);
    return x as number;
  };
  const boolean = (key: string, dflt: boolean): boolean => {
    const v = value[key];
    if (v === undefined) return dflt;
    return typeof v === "boolean" ? v : wrong(key, v);
  };

  const name =
    value.name === undefined ? null : typeof value.name === "string" ? value.name : wrong("name", value.name);
  const workloads = axis(
    "workloads",
    undefined,
    oneOf(
      WORKLOADS.map((w) => w.name),
      "workload",
    ),
  );
  let mmus: MmuName[];
  if (value.mmus === "all") mmus = [...ALL_MMUS];
  else if (typeof value.mmus === "string") return wrong("mmus", value.mmus);
  else mmus = axis("mmus", undefined, oneOf(MMU_NAMES, "MMU"));
  const tlbs = axis("tlbs", [formatTlbSpec(parseTlbSpec(DEFAULT_TLB_PRESET))], (x, at) => {
    if (typeof x !== "string")
      return fail(`"${at}" must be a TLB preset or spec string, got ${JSON.stringify(x)}`);
    try {
      return formatTlbSpec(parseTlbSpec(x));
    } catch (e) {
      if (e instanceof TlbConfigError) return fail(`"${at}": ${e.message}`);
      throw e;
    }
  });
  const guestPaging = axis<GuestPagingMode>(
    "guestPaging",
    ["4level"],
    oneOf(GUEST_PAGING_MODES, "paging mode"),
  );
  const seeds = axis("seeds", [1], nonNegInt);
  const scales = axis("scales", [1], (x, at) => {
    if (typeof x !== "number" || !Number.isFinite(x) || x <= 0 || x > 1000)
      fail(`"${at}" must be a number in (0, 1000], got ${JSON.stringify(x)}`);
    return x as number;
  });
  const hostPages = axis<HostPages>("hostPages", ["2m"], oneOf<HostPages>(["2m", "4k"], "host page size"));
  const caches = axis("caches", [{ pagingStructure: 0, nestedTlb: 0 }], (x, at) => {
    if (!isRecord(x))
      return fail(`"${at}" must be an object { pagingStructure, nestedTlb }, got ${JSON.stringify(x)}`);
    const c: CacheSizes = { pagingStructure: 0, nestedTlb: 0 };
    for (const [k, v] of Object.entries(x)) {
      if (k !== "pagingStructure" && k !== "nestedTlb")
        fail(`unknown key "${at}.${k}" (known: pagingStructure, nestedTlb)`);
      const n = nonNegInt(v, `${at}.${k}`);
      if (n !== 0 && (n & (n - 1)) !== 0) fail(`"${at}.${k}": ${n} entries is not 0 or a power of two`);
      c[k as keyof CacheSizes] = n;
    }
    return c;
  });
  const pcid = boolean("pcid", true);
  const native = boolean("native", true);
  const cpu =
    value.cpu === undefined
      ? DEFAULT_CPU_MODEL
      : oneOf(Object.keys(CPU_MODELS), "CPU model")(value.cpu, "cpu");
  const checkEvery = value.checkEvery === undefined ? 0 : nonNegInt(value.checkEvery, "checkEvery");
  let costs: CostModel = { ...DEFAULT_COSTS, exits: { ...DEFAULT_COSTS.exits }, tlbFlushByKind: {} };
  if (value.costs !== undefined) {
    let c: unknown = value.costs;
    let cwhere = `${where}: "costs"`;
    if (typeof c === "string") {
      if (!readCostFile)
        fail(`"costs": a cost file name ("${c}") cannot be read here; give the model inline`);
      cwhere = c;
      c = readCostFile!(c);
    } else if (!isRecord(c)) wrong("costs", c);
    try {
      costs = costModelFrom(c, cwhere);
    } catch (e) {
      if (e instanceof CostConfigError) fail(e.message);
      throw e;
    }
  }
  if (native && !mmus.includes("tdp")) mmus = [...mmus, "tdp"];
  return {
    name,
    workloads,
    mmus,
    tlbs,
    guestPaging,
    seeds,
    scales,
    hostPages,
    caches,
    pcid,
    cpu,
    checkEvery,
    native,
    costs,
  };
}

/** Parses the text of a JSON grid file (see `sweepConfigFrom`). */
export function parseSweepConfig(
  text: string,
  where = "sweep config",
  readCostFile?: (file: string) => unknown,
): SweepConfig {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new SweepConfigError(`${where}: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  return sweepConfigFrom(value, where, readCostFile);
}

// ---------------------------------------------------------------------------------------
// Points

/** Everything a run depends on: what a point's id is made from. */
export interface PointParams {
  workload: string;
  seed: number;
  scale: number;
  mmu: MmuName;
  guestPaging: GuestPagingMode;
  /** Full TLB spec. */
  tlb: string;
  hostHugePages: boolean;
  caches: CacheSizes;
  pcid: boolean;
  cpu: string;
  checkEvery: number;
}

export interface SweepPoint {
  /** `<workload>-<mmu>-<paging>-<12 hex digits of SHA-256 of the canonical parameters>`. */
  id: string;
  /** Identifies the configuration without the MMU: points of a group share a native baseline. */
  group: string;
  params: PointParams;
}

/** The record format version of point files and results. */
export const SWEEP_SCHEMA_VERSION = 1;

/** Canonical JSON of parameters (fixed key order), what ids hash. */
export function canonicalParams(p: PointParams): string {
  return JSON.stringify([
    p.workload,
    p.seed,
    p.scale,
    p.mmu,
    p.guestPaging,
    p.tlb,
    p.hostHugePages,
    p.caches.pagingStructure,
    p.caches.nestedTlb,
    p.pcid,
    p.cpu,
    p.checkEvery,
  ]);
}

function hash12(s: string): string {
  return createHash("sha256").update(s).digest("hex").slice(0, 12);
}

/** The point of a set of parameters. */
export function pointOf(params: PointParams): SweepPoint {
  const id = `${params.workload}-${params.mmu}-${params.guestPaging}-${hash12(`v${SWEEP_SCHEMA_VERSION}${canonicalParams(params)}`)}`;
  const group = hash12(canonicalParams({ ...params, mmu: "tdp" }));
  return { id, group, params };
}

/** Every point of the grid, sorted by id. */
export function expandGrid(c: SweepConfig): SweepPoint[] {
  const points: SweepPoint[] = [];
  for (const workload of c.workloads)
    for (const mmu of c.mmus)
      for (const tlb of c.tlbs)
        for (const guestPaging of c.guestPaging)
          for (const seed of c.seeds)
            for (const scale of c.scales)
              for (const hp of c.hostPages)
                for (const caches of c.caches)
                  points.push(
                    pointOf({
                      workload,
                      seed,
                      scale,
                      mmu,
                      guestPaging,
                      tlb,
                      hostHugePages: hp === "2m",
                      caches: { ...caches },
                      pcid: c.pcid,
                      cpu: c.cpu,
                      checkEvery: c.checkEvery,
                    }),
                  );
  return points.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** A hash of the grid's points (not of the costs): shard directories of one sweep share it. */
export function gridHash(points: readonly SweepPoint[]): string {
  return hash12(points.map((p) => p.id).join("\n"));
}

/** Shard K of N (1-based K). */
export interface Shard {
  index: number;
  count: number;
}

/** Parses "K/N" (1 ≤ K ≤ N). */
export function parseShard(s: string): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(s);
  if (!m) throw new RangeError(`shard "${s}" is not K/N (for example 2/8)`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1 || index < 1 || index > count)
    throw new RangeError(`shard "${s}": K must be in 1..N and N at least 1`);
  return { index, count };
}

/** The points of a shard: those whose index in the sorted list is ≡ K-1 (mod N). */
export function shardOf<T>(points: readonly T[], shard: Shard | undefined): T[] {
  if (!shard) return [...points];
  return points.filter((_, i) => i % shard.count === shard.index - 1);
}

// ---------------------------------------------------------------------------------------
// Point records (one file per point)

/** What a point file holds. */
export interface PointRecord {
  schemaVersion: typeof SWEEP_SCHEMA_VERSION;
  kind: "vmmu-sweep-point";
  id: string;
  params: PointParams;
  /** `runProgram`'s result (cycles at the default costs; `overheadVsNative` null). */
  result: RunResult;
}

export function pointRecord(point: SweepPoint, result: RunResult): PointRecord {
  return {
    schemaVersion: SWEEP_SCHEMA_VERSION,
    kind: "vmmu-sweep-point",
    id: point.id,
    params: point.params,
    result,
  };
}

/** Why a stored record is not a valid result for `point` (null when it is). */
export function pointRecordProblem(value: unknown, point: SweepPoint): string | null {
  if (!isRecord(value)) return "not a JSON object";
  if (value.kind !== "vmmu-sweep-point") return "not a sweep point record";
  if (value.schemaVersion !== SWEEP_SCHEMA_VERSION)
    return `schema version ${JSON.stringify(value.schemaVersion)}`;
  if (value.id !== point.id) return `it is the record of ${JSON.stringify(value.id)}`;
  if (
    !isRecord(value.params) ||
    canonicalParams(value.params as unknown as PointParams) !== canonicalParams(point.params)
  )
    return "its parameters differ";
  const r = value.result;
  if (!isRecord(r)) return "no result";
  for (const k of ["accesses", "tlbHits", "tlbMisses", "walkMemoryRefs", "guestPageFaults", "cycles"])
    if (typeof r[k] !== "number") return `result.${k} is missing`;
  if (r.mmu !== point.params.mmu) return "result.mmu differs";
  if (!isRecord(r.exits) || !isRecord(r.tlbFlushes) || typeof r.digest !== "string")
    return "the result is incomplete";
  return null;
}

// ---------------------------------------------------------------------------------------
// Results

/** One row of the results: a point, its result re-priced, and its group's baseline. */
export interface SweepResultPoint {
  id: string;
  group: string;
  workload: string;
  seed: number;
  scale: number;
  /** The run record, as in `simulate --json` (`overheadVsNative` set when the group has a TDP point). */
  result: RunResult;
}

export interface SweepResults {
  schemaVersion: typeof SWEEP_SCHEMA_VERSION;
  kind: "vmmu-sweep-results";
  name: string | null;
  grid: string;
  costs: CostModel;
  /** Points in the grid, and how many have results here. */
  total: number;
  complete: number;
  /** Ids of the grid's points without a result (empty when complete). */
  missing: string[];
  points: SweepResultPoint[];
  /** Native baselines by group (from each group's TDP point). */
  native: Record<string, NativeEstimate>;
  /** Digest mismatches within a group, audit findings. */
  problems: string[];
}

/**
 * The results document from the grid's points and the records found (by id). Cycles are
 * recomputed with `costs`; each group's TDP point gives its native estimate and overheads.
 */
export function assembleSweep(
  config: Pick<SweepConfig, "name" | "costs">,
  points: readonly SweepPoint[],
  records: ReadonlyMap<string, PointRecord>,
): SweepResults {
  const costs = config.costs;
  const out: SweepResultPoint[] = [];
  const missing: string[] = [];
  for (const p of points) {
    const rec = records.get(p.id);
    if (!rec) {
      missing.push(p.id);
      continue;
    }
    const r: RunResult = structuredClone(rec.result);
    r.cyclesByCause = cyclesOf(
      {
        tlbHits: r.tlbHits,
        tlbMisses: r.tlbMisses,
        walkMemoryRefs: r.walkMemoryRefs,
        exits: r.exits,
        guestPageFaults: r.guestPageFaults,
        tlbFlushes: r.tlbFlushes,
      },
      costs,
    );
    r.cycles = r.cyclesByCause.total;
    r.overheadVsNative = null;
    out.push({
      id: p.id,
      group: p.group,
      workload: p.params.workload,
      seed: p.params.seed,
      scale: p.params.scale,
      result: r,
    });
  }
  const native: Record<string, NativeEstimate> = {};
  for (const x of out) if (x.result.mmu === "tdp") native[x.group] = nativeFrom(x.result, costs);
  for (const x of out) {
    const n = native[x.group];
    if (n) x.result.overheadVsNative = n.cycles > 0 ? x.result.cycles / n.cycles - 1 : 0;
  }
  const problems: string[] = [];
  const byGroup = new Map<string, SweepResultPoint[]>();
  for (const x of out) {
    for (const pr of x.result.problems) problems.push(`${x.id}: ${pr}`);
    const g = byGroup.get(x.group);
    if (g) g.push(x);
    else byGroup.set(x.group, [x]);
  }
  for (const [g, xs] of byGroup)
    if (!xs.every((x) => x.result.digest === xs[0].result.digest))
      problems.push(
        `group ${g}: guest digests differ: ${xs.map((x) => `${x.result.mmu} ${x.result.digest}`).join(", ")}`,
      );
  return {
    schemaVersion: SWEEP_SCHEMA_VERSION,
    kind: "vmmu-sweep-results",
    name: config.name,
    grid: gridHash(points),
    costs,
    total: points.length,
    complete: out.length,
    missing,
    points: out,
    native,
    problems,
  };
}

// ---------------------------------------------------------------------------------------
// CSV

/** Leading columns; the rest are the run record's fields flattened with dots, in first-seen order. */
const LEAD = ["id", "group", "workload", "seed", "scale"];

function flatten(v: unknown, prefix: string, out: Map<string, string>): void {
  if (Array.isArray(v)) out.set(prefix, v.map(String).join("; "));
  else if (isRecord(v))
    for (const [k, x] of Object.entries(v)) flatten(x, prefix ? `${prefix}.${k}` : k, out);
  else out.set(prefix, v === null || v === undefined ? "" : String(v));
}

function csvField(s: string): string {
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** One row per point: id, group, workload, seed, scale, then every field of the run record. */
export function sweepCsv(r: SweepResults): string {
  const rows = r.points.map((p) => {
    const m = new Map<string, string>();
    for (const k of LEAD) m.set(k, String(p[k as keyof SweepResultPoint]));
    flatten(p.result, "", m);
    return m;
  });
  const cols: string[] = [...LEAD];
  const seen = new Set(cols);
  for (const m of rows)
    for (const k of m.keys())
      if (!seen.has(k)) {
        seen.add(k);
        cols.push(k);
      }
  const lines = [cols.map(csvField).join(",")];
  // The run record lists only the flush kinds that happened: a missing one is 0. Other
  // missing fields do not apply (another MMU's own counters) and stay empty.
  const cell = (m: Map<string, string>, c: string) => m.get(c) ?? (c.startsWith("tlbFlushes.") ? "0" : "");
  for (const m of rows) lines.push(cols.map((c) => csvField(cell(m, c))).join(","));
  return `${lines.join("\n")}\n`;
}

// ---------------------------------------------------------------------------------------
// Charts

/** A description of a group's configuration (what is the same for its MMUs). */
export function groupLabel(p: SweepResultPoint): string {
  const r = p.result;
  const parts = [
    `${p.workload}`,
    `seed ${p.seed}`,
    `scale ${p.scale}`,
    r.guestPaging,
    r.hostHugePages ? "host 2M" : "host 4K",
  ];
  if (r.caches.pagingStructure || r.caches.nestedTlb)
    parts.push(`psc ${r.caches.pagingStructure}`, `ntlb ${r.caches.nestedTlb}`);
  return parts.join(", ");
}

/** A `SimulationReport` per group that has a native baseline, for report.ts (table, chart). */
export function groupReports(r: SweepResults): { group: string; label: string; report: SimulationReport }[] {
  const byGroup = new Map<string, SweepResultPoint[]>();
  for (const p of r.points) {
    const g = byGroup.get(p.group);
    if (g) g.push(p);
    else byGroup.set(p.group, [p]);
  }
  const out: { group: string; label: string; report: SimulationReport }[] = [];
  for (const [group, xs] of byGroup) {
    const native = r.native[group];
    if (!native) continue;
    const runs = xs.map((x) => x.result).sort((a, b) => MMU_NAMES.indexOf(a.mmu) - MMU_NAMES.indexOf(b.mmu));
    const digestsAgree = runs.every((x) => x.digest === runs[0].digest);
    out.push({
      group,
      label: `${groupLabel(xs[0])}, TLB ${runs[0].tlb}`,
      report: {
        schemaVersion: 1,
        workload: xs[0].workload,
        seed: xs[0].seed,
        scale: xs[0].scale,
        guestPaging: runs[0].guestPaging,
        tlb: runs[0].tlb,
        costs: r.costs,
        runs,
        native,
        digestsAgree,
        problems: [],
      },
    });
  }
  return out;
}

const MMU_COLOURS: Record<MmuName, string> = {
  tdp: "#3182bd",
  "tdp-ept5": "#6baed6",
  "tdp-npt": "#9ecae1",
  "tdp-npt5": "#c6dbef",
  shadow: "#e6550d",
  "shadow-pv": "#fdae6b",
};

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/**
 * The sweep's chart: one row per configuration group, one horizontal bar per MMU, the length
 * its cycles relative to the group's native estimate (log scale, 1× to the largest). Groups
 * without a baseline are left out. For one group this is `formatSvg` of report.ts.
 */
export function sweepSvg(r: SweepResults): string {
  const groups = groupReports(r);
  if (groups.length === 1) return formatSvg(groups[0].report);
  const barH = 14;
  const left = 330;
  const plotW = 460;
  const top = 60;
  const rowsH = groups.reduce((s, g) => s + g.report.runs.length * barH + 16, 0);
  const width = left + plotW + 120;
  const height = top + Math.max(rowsH, 40) + 50;
  let maxRatio = 2;
  for (const g of groups)
    for (const x of g.report.runs)
      maxRatio = Math.max(maxRatio, x.cycles / Math.max(1, g.report.native.cycles));
  const decades = Math.ceil(Math.log10(maxRatio) * 2) / 2;
  const xOf = (ratio: number) => left + (Math.log10(Math.max(1, ratio)) / decades) * plotW;
  const o: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`,
    `<title>${esc(`vmmu sweep${r.name ? `: ${r.name}` : ""}`)}</title>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="10" y="22" font-size="15" font-weight="bold">${esc(`Cycles relative to native${r.name ? `: ${r.name}` : ""}`)}</text>`,
    `<text x="10" y="40" fill="#555555">${esc(`${r.complete} of ${r.total} points; log scale; native is estimated from each configuration's TDP run`)}</text>`,
  ];
  for (let t = 1; t <= 10 ** decades * 1.0001; t *= 10) {
    const x = xOf(t).toFixed(1);
    o.push(
      `<line x1="${x}" y1="${top - 4}" x2="${x}" y2="${top + rowsH}" stroke="#dddddd"/>`,
      `<text x="${x}" y="${top + rowsH + 14}" text-anchor="middle">${t >= 1000 ? grouped(t) : t}×</text>`,
    );
  }
  let y = top;
  for (const g of groups) {
    o.push(
      `<text x="10" y="${y + 10}" font-weight="bold">${esc(g.label.length > 52 ? `${g.label.slice(0, 51)}…` : g.label)}</text>`,
    );
    for (const x of g.report.runs) {
      const ratio = x.cycles / Math.max(1, g.report.native.cycles);
      o.push(
        `<text x="${left - 6}" y="${y + barH - 3}" text-anchor="end">${esc(x.mmu)}</text>`,
        `<rect x="${left}" y="${y + 1}" width="${Math.max(1, xOf(ratio) - left).toFixed(1)}" height="${barH - 2}" fill="${MMU_COLOURS[x.mmu]}"><title>${esc(`${x.mmu}: ${grouped(x.cycles)} cycles, ${ratio.toFixed(2)}× native`)}</title></rect>`,
        `<text x="${(xOf(ratio) + 4).toFixed(1)}" y="${y + barH - 3}">${ratio.toFixed(2)}×</text>`,
      );
      y += barH;
    }
    y += 16;
  }
  o.push(
    `<line x1="${left}" y1="${top - 4}" x2="${left}" y2="${top + rowsH}" stroke="#333333"/>`,
    `<text x="10" y="${height - 10}" fill="#555555">${esc(`TLB ${groups[0]?.report.tlb ?? "-"}${groups.some((g) => g.report.tlb !== groups[0].report.tlb) ? " and others (see results.csv)" : ""}`)}</text>`,
    "</svg>",
  );
  return `${o.join("\n")}\n`;
}

// ---------------------------------------------------------------------------------------
// Running one point

/** Runs one point: the built-in workload at its seed and scale, `runProgram` under its MMU. */
export function runPoint(p: PointParams): RunResult {
  const program = workload(p.workload).create({ seed: p.seed, scale: p.scale });
  return runProgram(program, {
    mmu: p.mmu,
    guestPaging: p.guestPaging,
    tlb: p.tlb,
    caches: p.caches,
    cpu: p.cpu,
    pcid: p.pcid,
    hostHugePages: p.hostHugePages,
    checkEvery: p.checkEvery,
  });
}
