/**
 * What the simulator runs: a `Program` is a deterministic stream of guest operations
 * (`SimOp`) for the guest OS model, produced by a built-in workload (workloads.ts), a set
 * of valgrind traces (lackey.ts) or your own generator.
 *
 * Operations name processes and memory regions by small integer handles chosen by the
 * program (`proc`, `region`), not by the pids and addresses the guest returns, so a program
 * is written once and the runner binds handles to pids and addresses as it goes. A forked
 * process inherits its parent's region handles; `exec` drops them.
 */

import type { GuestLayout } from "../guest/layout.js";
import type { TouchKind } from "../guest/os.js";

/** Region handles for the standard VMAs every spawned or exec'd process has. */
export const REGION_TEXT = -1;
/** 16 pages, read/write, after the text. */
export const REGION_DATA = -2;
/** 32 pages, read/write, below the stack top. */
export const REGION_STACK = -3;

/** Kind codes of the `touches` operation: 0 read, 1 write, 2 fetch. */
export const TOUCH_KINDS: readonly TouchKind[] = ["read", "write", "fetch"];

/** One guest operation. `cpu` defaults to 0 where it appears. */
export type SimOp =
  /** A new process with the standard layout (text, data, stack). */
  | { op: "spawn"; proc: number }
  /** fork `parent` into the new handle `proc` (copy-on-write). */
  | { op: "fork"; proc: number; parent: number }
  /** exec: the user half is dropped and the standard layout starts again. */
  | { op: "exec"; proc: number }
  | { op: "exit"; proc: number }
  /**
   * mmap `pages` pages (anonymous, private) as region handle `region`; `huge` asks for
   * huge pages, `atVpn` places the mapping at that virtual page (MAP_FIXED).
   */
  | { op: "mmap"; proc: number; region: number; pages: number; prot: number; huge?: boolean; atVpn?: number }
  | { op: "munmap"; proc: number; region: number }
  | { op: "mprotect"; proc: number; region: number; prot: number }
  /**
   * A 32-bit user access at byte `offset` (4-byte aligned) of a region. A write stores
   * `value` (default: a number derived from the operation's index).
   */
  | {
      op: "touch";
      proc: number;
      region: number;
      offset: number;
      kind: TouchKind;
      value?: number;
      cpu?: number;
    }
  /**
   * A run of `count` touches of one process in struct-of-arrays form, for traces and tight
   * loops: access i is a `TOUCH_KINDS[kind[i]]` at byte `offset[i]` of region `region` (or
   * `region[i]`). Exactly the same as `count` consecutive `touch` operations (it counts as
   * `count` operations, and a write stores the number a `touch` at that position would), at
   * a fraction of the cost. The runner reads the arrays before it asks for the next
   * operation, so a program may refill and yield the same arrays again.
   */
  | {
      op: "touches";
      proc: number;
      region: number | ArrayLike<number>;
      offset: ArrayLike<number>;
      kind: ArrayLike<number>;
      /** Accesses (default `offset.length`). */
      count?: number;
      cpu?: number;
    }
  /** Context switch: vCPU `cpu` runs `proc`. */
  | { op: "switch"; proc: number; cpu: number }
  /** A kswapd-style accessed-bit scan of the process. */
  | { op: "age"; proc: number }
  /** Start measuring here: counters before this point (warm-up) are left out of the results. */
  | { op: "measure" };

/** What a program may look at when it starts: the guest's memory layout (user range, paging mode). */
export interface ProgramEnv {
  readonly layout: GuestLayout;
}

/** A runnable program: the same `ops()` stream every time it is called with the same environment. */
export interface Program {
  /** A name for reports ("database", "trace: ls.lackey"). */
  readonly name: string;
  /** vCPUs the guest needs (1..64). */
  readonly cpus: number;
  /** Guest RAM in 4 KiB pages (the runner rounds it up to 2 MiB). */
  readonly ramPages: number;
  /** Operations in the stream, when known in advance (for progress reports). */
  readonly opCount?: number;
  /** A fresh iterator over the operations; deterministic. */
  ops(env: ProgramEnv): Iterable<SimOp>;
}

/** The code of each touch kind in a `touches` batch (the index in TOUCH_KINDS). */
const KIND_CODE: Readonly<Record<TouchKind, number>> = { read: 0, write: 1, fetch: 2 };

/**
 * Collects one process's touches into `touches` operations, for programs written as
 * generators:
 *
 * ```ts
 * const b = new TouchBatch(proc);
 * for (const off of offsets) if (b.add(region, off, "read")) yield b.take();
 * if (b.count > 0) yield b.take();
 * ```
 *
 * `take` hands out the batch and empties it; the arrays are reused, which is safe because
 * the runner reads a batch before it asks for the next operation.
 */
export class TouchBatch {
  readonly region: Int32Array;
  readonly offset: Float64Array;
  readonly kind: Uint8Array;
  count = 0;

  constructor(
    readonly proc: number,
    readonly cpu?: number,
    capacity = 4096,
  ) {
    this.region = new Int32Array(capacity);
    this.offset = new Float64Array(capacity);
    this.kind = new Uint8Array(capacity);
  }

  /** Adds a touch; returns true when the batch is full and must be taken before the next. */
  add(region: number, offset: number, kind: TouchKind): boolean {
    const i = this.count++;
    this.region[i] = region;
    this.offset[i] = offset;
    this.kind[i] = KIND_CODE[kind];
    return this.count === this.kind.length;
  }

  /** The touches added since the last `take`, as one operation. */
  take(): SimOp {
    const op: SimOp = {
      op: "touches",
      proc: this.proc,
      region: this.region,
      offset: this.offset,
      kind: this.kind,
      count: this.count,
    };
    if (this.cpu !== undefined) op.cpu = this.cpu;
    this.count = 0;
    return op;
  }
}

/**
 * The operations of a stream with every `touches` batch expanded into its `touch`
 * operations (the same run: a batch is defined as its expansion). For inspecting a
 * program's accesses one by one. A kind code other than 0, 1, 2 expands to an undefined
 * kind, which the runner refuses as it refuses the batch.
 */
export function* expandTouches(ops: Iterable<SimOp>): Generator<SimOp> {
  for (const op of ops) {
    if (op.op !== "touches") {
      yield op;
      continue;
    }
    const count = op.count ?? op.offset.length;
    for (let i = 0; i < count; i++) {
      yield {
        op: "touch",
        proc: op.proc,
        region: typeof op.region === "number" ? op.region : op.region[i],
        offset: op.offset[i],
        kind: TOUCH_KINDS[op.kind[i]],
        ...(op.cpu === undefined ? {} : { cpu: op.cpu }),
      };
    }
  }
}
