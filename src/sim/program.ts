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
