/**
 * The walker's fast path, compiled per format. For an x86 4/5-level or an EPT format, a
 * walk that ends in a plain success is generated as JavaScript source with the format's
 * facts as literals (each level's index bits, reserved-bit masks for table and leaf
 * entries, which levels may map large pages, the XD mask, the EPT misconfiguration table as
 * bit masks) and the levels unrolled, then compiled once per distinct format and class of
 * memory with `new Function`. Per level it reads the entry (probing the memory's frame
 * cache, or with `frameWords` for memories without one: host memory, the 2-D walk's view),
 * records it in the `Walk` at constant slots, and checks presence and reserved bits (EPT:
 * misconfigurations too); at the leaf it combines the rights, checks the permission table
 * and fills the record as `translateGeneral` would. Anything else (a fault of any kind, a
 * table outside RAM) returns FAST_NONE, having recorded only the path so far, and the
 * walker walks again with `translateGeneral`, which is pure, so the outcome is the same.
 * Differential tests
 * hold it to the general path (test/walk/x86-fast-path.test.ts,
 * test/walk/ept-fast-path.test.ts, test/hw/two-d-fast-path.test.ts).
 *
 * A lean variant records no path (for `GuestWalker.walkAddress`: callers that need only
 * where an address goes).
 *
 * Where code generation is forbidden (a browser page with a Content-Security-Policy
 * without 'unsafe-eval', `node --disallow-code-generation-from-strings`), the `specialize*`
 * functions return null and every walk takes the general path: the same results, slower.
 */

import type { PagingFormat } from "../arch/format.js";
import { EMPTY_FRAME_CACHE, type FrameSource } from "../mem/frame-source.js";
import type { Walk } from "./walk.js";

/** What a specialised walk reads from its walker on every call. */
export interface SpecializedWalker {
  readonly rootGfn: number;
  readonly permFault: Uint16Array;
}

/**
 * `(walker, memory, vaHi, vaLo, access, w) → FAST_*`: 0, not handled (the general path must
 * walk); 1, success with nothing to commit; 2, success, the accessed/dirty commit has work.
 */
export type SpecializedTranslate = (
  walker: SpecializedWalker,
  memory: FrameSource,
  vaHi: number,
  vaLo: number,
  access: number,
  w: Walk,
) => number;

/**
 * Compiled functions by the class of memory they walk, then by source (formats are few and
 * shared). One function per memory class keeps its `frameWords` calls monomorphic: a walk
 * over guest memory and the guest half of a 2-D walk do not share type feedback.
 */
const compiled = new WeakMap<object, Map<string, SpecializedTranslate | null>>();

/**
 * The specialised fast path for `f` over memories like `memory`, or null when code
 * generation is unavailable. The caller has checked that `f` is eligible for the fast path
 * (x86, 8-byte entries, 4 or 5 levels with the architectural index split, no PDPTE
 * registers, no protection keys).
 */
export function specializeX86(
  f: PagingFormat,
  memory: FrameSource,
  lean = false,
): SpecializedTranslate | null {
  return compile(x86Source(f, lean, hasCache(memory)), memory);
}

/**
 * The specialised fast path for EPT format `f` over memories like `memory`, or null when
 * code generation is unavailable. The caller has checked eligibility (4 or 5 levels, the
 * architectural index split).
 */
export function specializeEpt(
  f: PagingFormat,
  memory: FrameSource,
  lean = false,
): SpecializedTranslate | null {
  return compile(eptSource(f, lean, hasCache(memory)), memory);
}

/** Whether `memory` has a frame cache to probe (a source hands out EMPTY_FRAME_CACHE always or never). */
function hasCache(memory: FrameSource): boolean {
  return memory.currentFrameCache?.() !== EMPTY_FRAME_CACHE;
}

function compile(source: string, memory: FrameSource): SpecializedTranslate | null {
  const kind = Object.getPrototypeOf(memory) ?? memory;
  let bySource = compiled.get(kind);
  if (bySource === undefined) {
    bySource = new Map();
    compiled.set(kind, bySource);
  }
  let fn = bySource.get(source);
  if (fn === undefined) {
    try {
      fn = new Function(source)() as SpecializedTranslate;
    } catch {
      fn = null;
    }
    bySource.set(source, fn);
  }
  return fn;
}

/** Index of level `l`'s entry: bits 9l+11..9l+3 of the address, from whichever halves hold them. */
function indexOf(l: number): string {
  const shift = l * 9 + 3;
  if (shift >= 32) return `(vaHi >> ${shift - 32}) & 0x1ff`;
  if (shift + 9 <= 32) return `(vaLo >>> ${shift}) & 0x1ff`;
  return `((vaLo >>> ${shift}) | (vaHi << ${32 - shift})) & 0x1ff`;
}

const hex = (n: number) => `0x${(n >>> 0).toString(16)}`;

/** Source lines, and the parts every specialised walk shares. */
class Emitter {
  readonly lines: string[] = [];

  /**
   * `lean`: the path (levels, entry addresses, entry values) is not recorded. `cached`: the
   * memory has a frame cache to probe (false: it hands out EMPTY_FRAME_CACHE, and every read
   * goes to `frameWords` directly).
   */
  constructor(
    readonly lean: boolean,
    readonly cached: boolean,
  ) {}

  emit(s: string): void {
    this.lines.push(s);
  }

  /** The function head (the generated source returns the walk function). */
  head(name: string): void {
    this.emit(`return function ${name}(walker, mem, vaHi, vaLo, access, w) {`);
  }

  /** The frame cache and the record's arrays in locals, and the walk's variables. */
  locals(): void {
    if (this.cached) {
      this.emit(`const fc = mem.currentFrameCache();`);
      this.emit(`const tags = fc.gfn, frames = fc.words, bases = fc.base, mask = fc.mask;`);
    }
    if (!this.lean) this.emit(`const halves = w.halves, wLevel = w.level, wAddr = w.entryAddr;`);
    this.emit(
      `let g = walker.rootGfn, all = -1, xd = 0, lo = 0, hi = 0, index = 0, slot = 0, at = 0, k = 0, words = null;`,
    );
  }

  /** Reads level `l`'s entry (path index `d`) into lo/hi through the frame cache and records it. */
  read(l: number, d: number): void {
    if (this.cached) {
      this.emit(`index = ${indexOf(l)}; slot = g & mask;`);
      this.emit(`if (tags[slot] === g) { words = frames[slot]; at = bases[slot] + index * 2; }`);
      this.emit(
        `else { words = mem.frameWords(g); if (words === null) return 0; at = mem.frameBase + index * 2; }`,
      );
    } else {
      this.emit(`index = ${indexOf(l)}; words = mem.frameWords(g);`);
      this.emit(`if (words === null) return 0; at = mem.frameBase + index * 2;`);
    }
    this.emit(`lo = words[at] | 0; hi = words[at + 1] | 0;`);
    if (this.lean) return;
    // w.lo[d], w.hi[d], w.newLo[d], w.newHi[d] (MAX_LEVELS = 5 words apart).
    this.emit(`wLevel[${d}] = ${l}; wAddr[${d}] = g * 4096 + index * 8;`);
    this.emit(`halves[${d}] = halves[${d + 10}] = lo; halves[${d + 5}] = halves[${d + 15}] = hi;`);
  }

  /** The record of a successful walk whose leaf is at `level` after `depth` entries (eff computed). */
  record(level: number, depth: number): void {
    const shift = level * 9 + 3;
    const offsetMask = 2 ** shift - 1;
    this.emit(
      `w.vaHi = vaHi >>> 0; w.vaLo = vaLo >>> 0; w.access = access; w.registerMask = 0; w.missingMask = 0;`,
    );
    this.emit(
      `w.address = (hi & 0xfffff) * 0x100000000 + ((lo & ${hex(~offsetMask & 0xfffff000)}) >>> 0) + ((vaLo & ${hex(offsetMask)}) >>> 0);`,
    );
    this.emit(`w.pageShift = ${shift}; w.effective = eff; w.pkey = (hi >>> 27) & 15;`);
    this.emit(`w.fault = 0; w.reason = 0; w.errorCode = 0; w.faultLevel = 0;`);
    this.emit(`w.depth = ${depth}; w.setDirty = (access & 1) !== 0;`);
  }

  get source(): string {
    return this.lines.join("\n");
  }
}

function x86Source(f: PagingFormat, lean: boolean, cached: boolean): string {
  const e = new Emitter(lean, cached);
  const above = 64 - f.addressBits;
  // The end of a successful walk whose leaf is at `level`, `depth` entries read.
  const finish = (level: number, depth: number) => {
    e.emit(`all &= lo; xd |= hi;`);
    e.emit(`const eff = ((all >>> 1) & 3) | ((xd & ${hex(f.xdMaskHi)}) === 0 ? 4 : 0);`);
    e.emit(`if (((walker.permFault[access & 0x1f] >>> eff) & 1) !== 0) return 0;`);
    e.record(level, depth);
    e.emit(`w.accessedCount = ${depth};`);
    // FAST_CLEAN when every A (bit 5) is set, and D (bit 6) on the leaf if this is a write.
    e.emit(`return (all & 0x20) !== 0 && ((access & 1) === 0 || (lo & 0x40) !== 0) ? 1 : 2;`);
  };
  e.emit(`"use strict";`);
  e.head(`translateX86${f.levels}${lean ? "Lean" : ""}`);
  e.emit(`if ((vaHi << ${above}) >> ${above} !== (vaHi | 0)) return 0;`);
  e.locals();
  for (let l = f.levels, d = 0; l >= 1; l--, d++) {
    e.read(l, d);
    e.emit(`if ((lo & 1) === 0) return 0;`);
    const leafRsvd = `(lo & ${f.rsvdLo[l * 2 + 1] | 0}) !== 0 || (hi & ${f.rsvdHi[l * 2 + 1] | 0}) !== 0`;
    if (l === 1) {
      e.emit(`if (${leafRsvd}) return 0;`);
      finish(1, d + 1);
      break;
    }
    if ((f.largeLevels >>> l) & 1) {
      e.emit(`if ((lo & 0x80) !== 0) {`);
      e.emit(`if (${leafRsvd}) return 0;`);
      finish(l, d + 1);
      e.emit(`}`);
    }
    e.emit(`if ((lo & ${f.rsvdLo[l * 2] | 0}) !== 0 || (hi & ${f.rsvdHi[l * 2] | 0}) !== 0) return 0;`);
    e.emit(`all &= lo; xd |= hi;`);
    e.emit(`g = (hi & 0xfffff) * 0x100000 + (lo >>> 12);`);
  }
  e.emit(`};`);
  return e.source;
}

function eptSource(f: PagingFormat, lean: boolean, cached: boolean): string {
  const e = new Emitter(lean, cached);
  // With MBEC, user-execute (bit 10) counts as execute for the misconfiguration rules.
  const xu = f.mbec ? 0x400 : 0;
  const xwr = xu ? `(lo & 7) | ((lo & ${xu}) !== 0 ? 4 : 0)` : `lo & 7`;
  const finish = (level: number, depth: number) => {
    e.emit(`all &= lo;`);
    // R, W, X (supervisor X with MBEC) and, with MBEC, XU as bit 3 (EPT_EFF_*).
    e.emit(`const eff = ${xu ? `(all & 7) | ((all & ${xu}) >>> 7)` : "all & 7"};`);
    e.emit(`if (((walker.permFault[access & 0x1f] >>> eff) & 1) !== 0) return 0;`);
    e.record(level, depth);
    if (f.accessedMask === 0) {
      e.emit(`w.accessedCount = 0;`);
      e.emit(`return 1;`); // no EPT A/D flags: nothing to commit
    } else {
      e.emit(`w.accessedCount = ${depth};`);
      e.emit(`return (all & 0x100) !== 0 && ((access & 1) === 0 || (lo & 0x200) !== 0) ? 1 : 2;`);
    }
  };
  // The misconfiguration table ([memory type << 3 | XWR] → 1) as bit masks, so a check is
  // a shift of a literal rather than a table load: leaves index all 64 combinations (two
  // words), non-leaf entries have no memory type (the first 8).
  const bad = f.eptBadBits;
  let badLo = 0;
  let badHi = 0;
  for (let i = 0; i < 64; i++) {
    if (bad[i] === 0) continue;
    if (i < 32) badLo |= 1 << i;
    else badHi |= 1 << (i - 32);
  }
  e.emit(`"use strict";`);
  e.head(`translateEpt${f.levels}${lean ? "Lean" : ""}`);
  e.locals();
  for (let l = f.levels, d = 0; l >= 1; l--, d++) {
    e.read(l, d);
    e.emit(`if ((lo & ${f.presentMask}) === 0) return 0;`); // not present: a violation
    const leaf = () => {
      e.emit(
        `if ((lo & ${f.rsvdLo[l * 2 + 1] | 0}) !== 0 || (hi & ${f.rsvdHi[l * 2 + 1] | 0}) !== 0) return 0;`,
      );
      // A misconfiguration: memory type and XWR.
      e.emit(`k = (lo & 0x38) | ${xwr};`);
      e.emit(`if ((((k & 32) === 0 ? ${badLo | 0} : ${badHi | 0}) >>> (k & 31)) & 1) return 0;`);
      finish(l, d + 1);
    };
    if (l === 1) {
      leaf();
      break;
    }
    if ((f.largeLevels >>> l) & 1) {
      e.emit(`if ((lo & 0x80) !== 0) {`);
      leaf();
      e.emit(`}`);
    }
    e.emit(`if ((lo & ${f.rsvdLo[l * 2] | 0}) !== 0 || (hi & ${f.rsvdHi[l * 2] | 0}) !== 0) return 0;`);
    e.emit(`if (((${badLo & 0xff} >>> (${xwr})) & 1) !== 0) return 0;`);
    e.emit(`all &= lo;`);
    e.emit(`g = (hi & 0xfffff) * 0x100000 + (lo >>> 12);`);
  }
  e.emit(`};`);
  return e.source;
}
