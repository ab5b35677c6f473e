/**
 * Built-in workloads: small declarative programs for the guest OS model, each meant to
 * stress one part of memory virtualization. Sizes scale with `scale` (1 = the default,
 * a few seconds per MMU; tests use 0.05..0.25); every random choice comes from a `Prng`
 * seeded with `seed`, so (workload, scale, seed) always yields the same operations.
 *
 *   name      intent                                                          vCPUs
 *   compile   fork/exec/exit storm (a parallel build): short-lived processes,   2
 *             COW breaks, page tables built and torn down, context switches
 *   database  one process with a large random working set: TLB-hostile,          1
 *             every access likely a miss and a full walk; one A-bit scan
 *   server    many worker processes, a request each time slice: frequent         2
 *             context switches (PCIDs), small working sets, buffer recycling
 *   stream    sequential passes over a huge-page mapping: few TLB misses,        1
 *             huge faults, the best case for every MMU
 *   churn     mmap/munmap/mprotect churn: tables allocated and freed, INVLPGs,   1
 *             shadow pages zapped, write-protection changes
 */

import { PROT_EXEC, PROT_READ, PROT_WRITE, type TouchKind } from "../guest/os.js";
import { type Program, REGION_DATA, REGION_STACK, REGION_TEXT, type SimOp, TouchBatch } from "./program.js";
import { Prng } from "./random.js";

export interface WorkloadOptions {
  /** Size factor (> 0, default 1). */
  scale?: number;
  /** PRNG seed (default 1). */
  seed?: number;
}

export interface Workload {
  readonly name: string;
  /** One line: what the workload does and what it stresses. */
  readonly intent: string;
  /** The program for a scale and seed. */
  create(o?: WorkloadOptions): Program;
}

const RW = PROT_READ | PROT_WRITE;
const MIB_PAGES = 256;

/** Validated scale and seed, and a count scaled by the factor (at least `min`). */
function setup(o: WorkloadOptions | undefined): {
  scale: number;
  seed: number;
  n: (x: number, min?: number) => number;
} {
  const scale = o?.scale ?? 1;
  const seed = o?.seed ?? 1;
  if (!Number.isFinite(scale) || scale <= 0 || scale > 1000)
    throw new RangeError(`scale ${scale} must be a number in (0, 1000]`);
  if (!Number.isSafeInteger(seed) || seed < 0)
    throw new RangeError(`seed ${seed} is not a non-negative integer`);
  return { scale, seed, n: (x, min = 1) => Math.max(min, Math.round(x * scale)) };
}

/** A program whose operations come from a generator function. */
function program(name: string, cpus: number, ramPages: number, gen: () => Generator<SimOp>): Program {
  let count: number | undefined;
  return {
    name,
    cpus,
    ramPages,
    get opCount(): number {
      if (count === undefined) {
        count = 0;
        for (const op of gen()) count += op.op === "touches" ? (op.count ?? op.offset.length) : 1;
      }
      return count;
    },
    ops: gen,
  };
}

const word = (rng: Prng, pages: number): number => rng.int(pages) * 4096 + rng.int(1024) * 4;

function* touch(proc: number, region: number, offset: number, kind: TouchKind, cpu = 0): Generator<SimOp> {
  yield { op: "touch", proc, region, offset, kind, cpu };
}

// ---------------------------------------------------------------------------------------
// compile

/** One compiler job's work, after the fork: exec, read sources, build a heap, write output, exit. */
function compileJob(rng: Prng, proc: number, cpu: number): SimOp[] {
  const ops: SimOp[] = [{ op: "exec", proc }];
  const heap = 1;
  const heapPages = 16 + rng.int(48);
  ops.push({ op: "mmap", proc, region: heap, pages: heapPages, prot: RW });
  const steps = 120 + rng.int(120);
  for (let i = 0; i < steps; i++) {
    const r = rng.int(10);
    if (r < 3)
      ops.push({ op: "touch", proc, region: REGION_TEXT, offset: word(rng, 16), kind: "fetch", cpu });
    else if (r < 5)
      ops.push({ op: "touch", proc, region: REGION_DATA, offset: word(rng, 16), kind: "read", cpu });
    else if (r < 6)
      ops.push({
        op: "touch",
        proc,
        region: REGION_STACK,
        offset: word(rng, 8) + 24 * 4096,
        kind: "write",
        cpu,
      });
    else {
      // The heap grows as the compiler allocates: mostly near the front, sometimes anywhere.
      const page = Math.min(heapPages - 1, Math.floor((i / steps) * heapPages) + rng.int(2));
      ops.push({
        op: "touch",
        proc,
        region: heap,
        offset: page * 4096 + rng.int(1024) * 4,
        kind: rng.chance(0.6) ? "write" : "read",
        cpu,
      });
    }
  }
  ops.push({ op: "exit", proc });
  return ops;
}

export const compile: Workload = {
  name: "compile",
  intent:
    "fork/exec/exit storm like a parallel build (make -j2): short-lived processes, COW breaks, tables built and torn down",
  create(o) {
    const { seed, n } = setup(o);
    const jobs = n(24, 2);
    return program("compile", 2, 32 * MIB_PAGES, function* () {
      const rng = new Prng(seed);
      const make = 0;
      yield { op: "spawn", proc: make };
      for (let p = 0; p < 16; p++) yield* touch(make, REGION_TEXT, p * 4096, "fetch");
      for (let p = 0; p < 16; p++) yield* touch(make, REGION_DATA, p * 4096, "write");
      let next = 1;
      for (let j = 0; j < jobs; j += 2) {
        // make forks two jobs and runs them side by side on the two vCPUs.
        const pair: SimOp[][] = [];
        for (let k = 0; k < 2 && j + k < jobs; k++) {
          const child = next++;
          yield { op: "fork", proc: child, parent: make };
          // make updates its bookkeeping after the fork: a COW break on its side.
          yield* touch(make, REGION_DATA, rng.int(16) * 4096, "write");
          pair.push(compileJob(rng, child, k));
        }
        for (let at = 0; pair.some((ops) => at < ops.length); at += 24)
          // A touch names its vCPU, which switches the job onto it: a context switch per slice.
          for (const ops of pair) yield* ops.slice(at, at + 24);
        // make waits for the jobs, reads their status.
        yield { op: "switch", proc: make, cpu: 0 };
        yield* touch(make, REGION_DATA, word(rng, 16), "read");
      }
      yield { op: "exit", proc: make };
    });
  },
};

// ---------------------------------------------------------------------------------------
// database

export const database: Workload = {
  name: "database",
  intent:
    "one process with a large random working set (a buffer pool): TLB-hostile, most accesses miss and walk; one A-bit scan",
  create(o) {
    const { seed, n } = setup(o);
    const pages = n(8192, 64);
    const lookups = n(60000, 100);
    return program("database", 1, pages + 16 * MIB_PAGES, function* () {
      const rng = new Prng(seed);
      const db = 0;
      const pool = 0;
      yield { op: "spawn", proc: db };
      yield { op: "mmap", proc: db, region: pool, pages, prot: RW };
      const b = new TouchBatch(db, 0);
      // Load the table: every page written once.
      for (let p = 0; p < pages; p++) if (b.add(pool, p * 4096 + rng.int(1024) * 4, "write")) yield b.take();
      for (let i = 0; i < lookups; i++) {
        if (i === lookups >> 1) {
          if (b.count > 0) yield b.take();
          yield { op: "age", proc: db };
        }
        // Index pages (the first 1/16th) are hot; rows anywhere.
        const hot = rng.chance(0.25);
        const p = hot ? rng.int(Math.max(1, pages >> 4)) : rng.int(pages);
        if (b.add(pool, p * 4096 + rng.int(1024) * 4, rng.chance(0.3) ? "write" : "read")) yield b.take();
      }
      if (b.count > 0) yield b.take();
      yield { op: "exit", proc: db };
    });
  },
};

// ---------------------------------------------------------------------------------------
// server

export const server: Workload = {
  name: "server",
  intent:
    "many worker processes serving requests in short time slices: frequent context switches (PCIDs), small working sets",
  create(o) {
    const { seed, n } = setup(o);
    const workers = n(12, 2);
    const requests = n(2000, 20);
    return program("server", 2, 32 * MIB_PAGES, function* () {
      const rng = new Prng(seed);
      const buffer = 0;
      const bufferPages = 8;
      for (let w = 0; w < workers; w++) {
        yield { op: "spawn", proc: w };
        yield { op: "mmap", proc: w, region: buffer, pages: bufferPages, prot: RW };
      }
      for (let r = 0; r < requests; r++) {
        const w = rng.int(workers);
        const cpu = r & 1;
        yield { op: "switch", proc: w, cpu };
        // Recycle the request buffer now and then (free + malloc of a large buffer).
        if (rng.chance(0.03)) {
          yield { op: "munmap", proc: w, region: buffer };
          yield { op: "mmap", proc: w, region: buffer, pages: bufferPages, prot: RW };
        }
        for (let i = 0; i < 4; i++) yield* touch(w, REGION_TEXT, word(rng, 16), "fetch", cpu);
        for (let i = 0; i < 4; i++) yield* touch(w, REGION_STACK, 28 * 4096 + word(rng, 4), "write", cpu);
        for (let i = 0; i < 6; i++) yield* touch(w, REGION_DATA, word(rng, 16), "read", cpu);
        const len = 1 + rng.int(bufferPages);
        for (let p = 0; p < len; p++) yield* touch(w, buffer, p * 4096 + rng.int(1024) * 4, "write", cpu);
        for (let p = 0; p < len; p++) yield* touch(w, buffer, p * 4096, "read", cpu);
      }
      for (let w = 0; w < workers; w++) yield { op: "exit", proc: w };
    });
  },
};

// ---------------------------------------------------------------------------------------
// stream

export const stream: Workload = {
  name: "stream",
  intent:
    "sequential passes (write, read, read-modify-write) over a huge-page mapping: few TLB misses, huge faults",
  create(o) {
    const { seed, n } = setup(o);
    // Whole 4 MiB units, so the mapping is made of huge pages in every paging mode.
    const mib = n(16, 4);
    const bytes = Math.ceil(mib / 4) * 4 * (1 << 20);
    const stride = 512;
    return program("stream", 1, bytes / 4096 + 24 * MIB_PAGES, function* () {
      const rng = new Prng(seed);
      const s = 0;
      const a = 0;
      yield { op: "spawn", proc: s };
      yield { op: "mmap", proc: s, region: a, pages: bytes / 4096, prot: RW, huge: true };
      // Start at a random cache line so seeds differ.
      const start = rng.int(stride / 4) * 4;
      const b = new TouchBatch(s, 0);
      for (let off = start; off < bytes; off += stride) if (b.add(a, off, "write")) yield b.take();
      for (let off = start; off < bytes; off += stride) if (b.add(a, off, "read")) yield b.take();
      for (let off = start; off < bytes; off += stride) {
        if (b.add(a, off, "read")) yield b.take();
        if (b.add(a, off, "write")) yield b.take();
      }
      if (b.count > 0) yield b.take();
      yield { op: "exit", proc: s };
    });
  },
};

// ---------------------------------------------------------------------------------------
// churn

export const churn: Workload = {
  name: "churn",
  intent:
    "mmap/munmap/mprotect churn (an allocator returning memory): tables allocated and freed, INVLPGs, shadow zaps",
  create(o) {
    const { seed, n } = setup(o);
    const rounds = n(1500, 10);
    return program("churn", 1, 32 * MIB_PAGES, function* () {
      const rng = new Prng(seed);
      const c = 0;
      yield { op: "spawn", proc: c };
      const live: { region: number; pages: number; prot: number }[] = [];
      let nextRegion = 0;
      for (let i = 0; i < rounds; i++) {
        const pages = 1 + rng.int(32);
        const region = nextRegion++;
        const prot = rng.chance(0.1) ? RW | PROT_EXEC : RW;
        yield { op: "mmap", proc: c, region, pages, prot };
        live.push({ region, pages, prot });
        for (let k = 0, m = 1 + (pages >> 1); k < m; k++)
          yield* touch(c, region, rng.int(pages) * 4096 + rng.int(1024) * 4, "write");
        // Use an older region: read it, write it if it is writable.
        const old = live[rng.int(live.length)];
        for (let k = 0; k < 4; k++) {
          const kind: TouchKind = old.prot & PROT_WRITE && rng.chance(0.5) ? "write" : "read";
          yield* touch(c, old.region, word(rng, old.pages), kind);
        }
        if (rng.chance(0.15)) {
          // Toggle write permission: removing W invalidates, adding it back is lazy.
          old.prot = old.prot & PROT_WRITE ? old.prot & ~PROT_WRITE : old.prot | PROT_WRITE;
          yield { op: "mprotect", proc: c, region: old.region, prot: old.prot };
        }
        if (live.length > 8) {
          const victim = live.splice(rng.int(live.length), 1)[0];
          yield { op: "munmap", proc: c, region: victim.region };
        }
      }
      yield { op: "exit", proc: c };
    });
  },
};

/** The built-in workloads, by name. */
export const WORKLOADS: readonly Workload[] = [compile, database, server, stream, churn];

/** Looks a built-in workload up; throws a RangeError listing the names. */
export function workload(name: string): Workload {
  const w = WORKLOADS.find((x) => x.name === name);
  if (!w)
    throw new RangeError(`unknown workload "${name}" (known: ${WORKLOADS.map((x) => x.name).join(", ")})`);
  return w;
}
