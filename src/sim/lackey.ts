/**
 * Valgrind lackey memory traces (`valgrind --tool=lackey --trace-mem=yes PROGRAM`):
 *
 * ```
 * ==12345== Lackey, an example Valgrind tool        valgrind's messages: skipped
 * I  04011c0,3                                       instruction fetch: address (hex), size
 *  L 1ffefffd68,8                                    load
 *  S 1ffefffd60,8                                    store
 *  M 0403e3a8,4                                      modify: a load then a store
 * ```
 *
 * The parts: (i) a hand-written streaming parser that reads bytes (no per-line strings
 * or regular expressions) into a compact `TraceBuffer` (9 bytes per access); (ii) the
 * regions a trace touches, placed in the guest's user space; (iii) a `Program` that replays
 * several traces as several processes with a scheduling quantum.
 *
 * Malformed lines: by default a line that is not a valgrind message, a blank line, an
 * `SB` line (`--trace-superblocks`) or an access is skipped and counted, and the first few
 * are kept with their line numbers (`LackeyTrace.problems`), because a trace cut short by
 * a killed valgrind or a pipe ends in half a line. With `strict: true` the first one
 * throws a `TraceError` naming the file and line.
 */

import { closeSync, openSync, readSync } from "node:fs";
import { basename } from "node:path";
import { PROT_EXEC, PROT_READ, PROT_WRITE, type TouchKind } from "../guest/os.js";
import { type Program, type ProgramEnv, type SimOp, TouchBatch } from "./program.js";

export const TRACE_INSTR = 0;
export const TRACE_LOAD = 1;
export const TRACE_STORE = 2;
export const TRACE_MODIFY = 3;

/** Accesses in struct-of-arrays form: address (exact below 2^53), size, kind. */
export class TraceBuffer {
  count = 0;
  address = new Float64Array(4096);
  size = new Uint32Array(4096);
  kind = new Uint8Array(4096);

  push(kind: number, address: number, size: number): void {
    if (this.count === this.kind.length) {
      const n = this.count * 2;
      const a = new Float64Array(n);
      a.set(this.address);
      this.address = a;
      const s = new Uint32Array(n);
      s.set(this.size);
      this.size = s;
      const k = new Uint8Array(n);
      k.set(this.kind);
      this.kind = k;
    }
    this.address[this.count] = address;
    this.size[this.count] = size;
    this.kind[this.count] = kind;
    this.count++;
  }
}

/** One malformed line. */
export interface TraceProblem {
  file: string;
  line: number;
  reason: string;
  /** The line (at most 80 characters). */
  text: string;
}

export class TraceError extends Error {
  override name = "TraceError";
  constructor(readonly problem: TraceProblem) {
    super(`${problem.file}:${problem.line}: ${problem.reason}: "${problem.text}"`);
  }
}

export interface LackeyTrace {
  /** The name used in messages and reports (the file's base name). */
  name: string;
  accesses: TraceBuffer;
  /** Lines read. */
  lines: number;
  /** Valgrind messages, blank lines and SB lines skipped. */
  skipped: number;
  /** Malformed lines skipped (not in strict mode). */
  malformed: number;
  /** The first `maxProblems` malformed lines. */
  problems: TraceProblem[];
}

export interface LackeyOptions {
  /** Throw a TraceError at the first malformed line (default false: skip and count). */
  strict?: boolean;
  /** Malformed lines kept in `problems` (default 5). */
  maxProblems?: number;
}

const NL = 10;
const CR = 13;
const SP = 32;
const TAB = 9;
const EQ = 61;
const COMMA = 44;
/** Largest access size accepted (XSAVE areas are a few KiB). */
const MAX_SIZE = 1 << 16;

/** Hex digit value of a byte, or -1. */
function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** (i) The streaming parser: feed it chunks of bytes, then `end()`. */
export class LackeyParser {
  private readonly trace: LackeyTrace;
  private carry: Uint8Array | null = null;
  private readonly strict: boolean;
  private readonly maxProblems: number;

  constructor(name: string, o: LackeyOptions = {}) {
    this.trace = { name, accesses: new TraceBuffer(), lines: 0, skipped: 0, malformed: 0, problems: [] };
    this.strict = o.strict ?? false;
    this.maxProblems = o.maxProblems ?? 5;
  }

  push(chunk: Uint8Array): void {
    let last = chunk.lastIndexOf(NL);
    if (last < 0) {
      this.carry = this.carry ? concat(this.carry, chunk) : chunk.slice();
      return;
    }
    let buf = chunk;
    if (this.carry) {
      buf = concat(this.carry, chunk);
      last += this.carry.length;
      this.carry = null;
    }
    this.lines(buf, last + 1);
    if (last + 1 < buf.length) this.carry = buf.slice(last + 1);
  }

  end(): LackeyTrace {
    if (this.carry && this.carry.length > 0) this.lines(this.carry, this.carry.length, true);
    this.carry = null;
    return this.trace;
  }

  /** Parses the lines of b[0, end); the last one may lack its newline when `final`. */
  private lines(b: Uint8Array, end: number, final = false): void {
    const t = this.trace;
    const acc = t.accesses;
    let i = 0;
    while (i < end) {
      let eol = b.indexOf(NL, i);
      if (eol < 0 || eol >= end) {
        if (!final) return;
        eol = end;
      }
      t.lines++;
      let e = eol;
      if (e > i && b[e - 1] === CR) e--;
      let p = i;
      while (p < e && (b[p] === SP || b[p] === TAB)) p++;
      if (p === e || (b[p] === EQ && b[p + 1] === EQ) || (b[p] === 83 && b[p + 1] === 66) /* "SB" */) {
        t.skipped++;
        i = eol + 1;
        continue;
      }
      const k = b[p];
      const kind =
        k === 73
          ? TRACE_INSTR
          : k === 76
            ? TRACE_LOAD
            : k === 83
              ? TRACE_STORE
              : k === 77
                ? TRACE_MODIFY
                : -1;
      let reason = "";
      if (kind < 0) reason = "expected I, L, S or M";
      else {
        p++;
        const blanks = p;
        while (p < e && (b[p] === SP || b[p] === TAB)) p++;
        const blank = p > blanks;
        let address = 0;
        let digits = 0;
        for (let h = p < e ? hexValue(b[p]) : -1; h >= 0; h = p < e ? hexValue(b[p]) : -1) {
          address = address * 16 + h;
          digits++;
          p++;
        }
        let size = 0;
        if (!blank) reason = "expected a blank after the access kind";
        else if (digits === 0) reason = "expected a hexadecimal address";
        else if (address > Number.MAX_SAFE_INTEGER) reason = "address above 2^53";
        else if (p >= e || b[p] !== COMMA) reason = "expected ',' after the address";
        else {
          p++;
          const first = p;
          while (p < e && b[p] >= 48 && b[p] <= 57 && size <= MAX_SIZE) size = size * 10 + (b[p++] - 48);
          while (p < e && (b[p] === SP || b[p] === TAB)) p++;
          if (p === first) reason = "expected a decimal size after ','";
          else if (size === 0 || size > MAX_SIZE) reason = `size must be 1..${MAX_SIZE}`;
          else if (p !== e) reason = "unexpected text after the size";
        }
        if (reason === "") acc.push(kind, address, size);
      }
      if (reason !== "") this.problem(b, i, e, reason);
      i = eol + 1;
    }
  }

  private problem(b: Uint8Array, start: number, end: number, reason: string): void {
    const t = this.trace;
    const text = new TextDecoder().decode(b.subarray(start, Math.min(end, start + 80)));
    const problem = { file: t.name, line: t.lines, reason, text };
    if (this.strict) throw new TraceError(problem);
    t.malformed++;
    if (t.problems.length < this.maxProblems) t.problems.push(problem);
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const c = new Uint8Array(a.length + b.length);
  c.set(a);
  c.set(b, a.length);
  return c;
}

/** Parses a whole trace held in memory. */
export function parseLackey(text: string | Uint8Array, name = "trace", o: LackeyOptions = {}): LackeyTrace {
  const p = new LackeyParser(name, o);
  p.push(typeof text === "string" ? new TextEncoder().encode(text) : text);
  return p.end();
}

/** Reads a trace file in 1 MiB chunks (named by its base name in messages). */
export function readLackeyFile(path: string, o: LackeyOptions & { name?: string } = {}): LackeyTrace {
  const p = new LackeyParser(o.name ?? basename(path), o);
  const fd = openSync(path, "r");
  try {
    const chunk = new Uint8Array(1 << 20);
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      p.push(chunk.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return p.end();
}

// ---------------------------------------------------------------------------------------
// (ii) Regions

/** 4 MiB units (1024 pages): the granularity at which a trace's address space is placed. */
const UNIT_PAGES = 1024;

/** A run of touched 4 MiB units, mapped as one VMA from its first to its last touched page. */
export interface TraceRegion {
  /** First touched page and the page after the last, in the traced program's address space. */
  firstVpn: number;
  endVpn: number;
  /** Where `firstVpn` lands in the guest. */
  guestVpn: number;
}

export interface TraceLayout {
  regions: TraceRegion[];
  /** Distinct pages the trace touches. */
  pages: number;
  /** Whether the regions had to move (the traced addresses do not fit the guest's user space). */
  relocated: boolean;
}

/** Distinct pages touched (accesses split at page boundaries), ascending. */
export function tracePages(t: LackeyTrace): number[] {
  const a = t.accesses;
  const seen = new Set<number>();
  for (let i = 0; i < a.count; i++) {
    const first = Math.floor(a.address[i] / 4096);
    const last = Math.floor((a.address[i] + a.size[i] - 1) / 4096);
    for (let v = first; v <= last; v++) seen.add(v);
  }
  return [...seen].sort((x, y) => x - y);
}

/**
 * Places a trace in a guest's user space [userFirstVpn, userEndVpn): at its own addresses
 * when every region fits (64-bit guests, usually), else (32-bit and PAE guests: valgrind's
 * stack is near 128 GiB) packed upwards from 4 MiB, one unit apart, each region keeping its
 * offset within its 4 MiB unit so that page-table indices below the unit stay the same.
 */
export function layoutTrace(t: LackeyTrace, userFirstVpn: number, userEndVpn: number): TraceLayout {
  const pages = tracePages(t);
  const regions: TraceRegion[] = [];
  for (const v of pages) {
    const r = regions[regions.length - 1];
    if (r && Math.floor(v / UNIT_PAGES) <= Math.floor((r.endVpn - 1) / UNIT_PAGES) + 1) r.endVpn = v + 1;
    else regions.push({ firstVpn: v, endVpn: v + 1, guestVpn: v });
  }
  const fits = regions.every((r) => r.firstVpn >= userFirstVpn && r.endVpn <= userEndVpn);
  if (!fits) {
    let unit = 1;
    for (const r of regions) {
      const firstUnit = Math.floor(r.firstVpn / UNIT_PAGES);
      r.guestVpn = unit * UNIT_PAGES + (r.firstVpn - firstUnit * UNIT_PAGES);
      unit += Math.floor((r.endVpn - 1) / UNIT_PAGES) - firstUnit + 2;
      if (r.guestVpn < userFirstVpn || unit * UNIT_PAGES > userEndVpn)
        throw new RangeError(
          `${t.name}: the trace's ${regions.length} regions do not fit the guest's ${((userEndVpn * 4096) / 2 ** 30).toFixed(0)} GiB user space`,
        );
    }
  }
  return { regions, pages: pages.length, relocated: !fits };
}

// ---------------------------------------------------------------------------------------
// (iii) Replay

export interface TraceProgramOptions {
  /** Accesses of one trace before switching to the next (default 10,000). */
  quantum?: number;
}

/** Touches per trace kind: I fetch, L read, S write, M read then write. */
const KINDS: readonly (readonly TouchKind[])[] = [["fetch"], ["read"], ["write"], ["read", "write"]];
const RWX = PROT_READ | PROT_WRITE | PROT_EXEC;

/**
 * Replays traces as processes on one vCPU: process i maps trace i's regions (read, write,
 * execute, demand-paged: the guest's #PF handler fills each page on first touch), then the
 * traces run round-robin, `quantum` accesses at a time, each switch a context switch. An
 * access becomes one 32-bit touch per page it covers (at its first aligned word in that
 * page): one TLB lookup per page, as the hardware makes; `M` is a load then a store. The
 * touches come in `touches` batches of up to 4096 (one buffer, refilled).
 */
export function traceProgram(traces: readonly LackeyTrace[], o: TraceProgramOptions = {}): Program {
  const quantum = o.quantum ?? 10_000;
  if (!Number.isSafeInteger(quantum) || quantum < 1)
    throw new RangeError(`quantum ${quantum} must be a positive integer`);
  if (traces.length === 0) throw new RangeError("no traces to replay");
  const layouts = new Map<string, TraceLayout[]>();
  let pages = 0;
  for (const t of traces) pages += tracePages(t).length;
  const layoutFor = (env: ProgramEnv): TraceLayout[] => {
    const l = env.layout;
    const key = `${l.userFirstVpn}:${l.userEndVpn}`;
    let r = layouts.get(key);
    if (!r) {
      r = traces.map((t) => layoutTrace(t, l.userFirstVpn, l.userEndVpn));
      layouts.set(key, r);
    }
    return r;
  };
  const name =
    traces.length === 1 ? `trace ${traces[0].name}` : `traces ${traces.map((t) => t.name).join(", ")}`;
  return {
    name,
    cpus: 1,
    // Every touched page, plus room for page tables and the kernel.
    ramPages: pages + pages / 256 + 8192,
    *ops(env: ProgramEnv): Generator<SimOp> {
      const ls = layoutFor(env);
      for (let t = 0; t < traces.length; t++) {
        yield { op: "spawn", proc: t };
        const regions = ls[t].regions;
        for (let region = 0; region < regions.length; region++) {
          const r = regions[region];
          yield { op: "mmap", proc: t, region, pages: r.endVpn - r.firstVpn, prot: RWX, atVpn: r.guestVpn };
        }
      }
      const next = traces.map(() => 0);
      const batches = traces.map((_, t) => new TouchBatch(t));
      for (let live = traces.length; live > 0; ) {
        for (let t = 0; t < traces.length; t++) {
          const a = traces[t].accesses;
          if (next[t] >= a.count) continue;
          if (traces.length > 1) yield { op: "switch", proc: t, cpu: 0 };
          const regions = ls[t].regions;
          const b = batches[t];
          const stop = Math.min(a.count, next[t] + quantum);
          for (let i = next[t]; i < stop; i++) {
            const start = a.address[i];
            const end = start + a.size[i];
            for (let at = start; at < end; at = (Math.floor(at / 4096) + 1) * 4096) {
              const vpn = Math.floor(at / 4096);
              const r = findRegion(regions, vpn);
              const offset = (vpn - regions[r].firstVpn) * 4096 + ((at % 4096) & ~3);
              for (const kind of KINDS[a.kind[i]]) if (b.add(r, offset, kind)) yield b.take();
            }
          }
          if (b.count > 0) yield b.take();
          next[t] = stop;
          if (stop === a.count) {
            yield { op: "exit", proc: t };
            live--;
          }
        }
      }
    },
  };
}

/** The region holding `vpn` (binary search; regions are ascending and disjoint). */
function findRegion(regions: readonly TraceRegion[], vpn: number): number {
  let lo = 0;
  let hi = regions.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (regions[mid].firstVpn <= vpn) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
