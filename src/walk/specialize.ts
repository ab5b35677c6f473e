/**
 * Specialised fast paths: for an x86 4/5-level format, the walker's fast path (see
 * `GuestWalker.translateFast`) is generated as JavaScript source with the format's facts as
 * literals (each level's index bits, reserved-bit masks for table and leaf entries, which
 * levels may map large pages, the XD mask) and the levels unrolled, then compiled once per
 * distinct format with `new Function`. What that removes from every walk: the level loop
 * and its index arithmetic, the reserved-mask table loads, the large-page test at levels
 * that cannot map a page, and the variable stores into the `Walk` record's arrays (each
 * level's slots are constants). It is the same walk: every check, every record field and
 * the FAST_* outcome are those of `translateFast`, which a differential test holds it to.
 *
 * Where code generation is forbidden (a browser page with a Content-Security-Policy
 * without 'unsafe-eval', `node --disallow-code-generation-from-strings`), `specializeX86`
 * returns null and the walker keeps its generic fast path.
 */

import type { PagingFormat } from "../arch/format.js";
import type { FrameSource } from "../mem/frame-source.js";
import type { Walk } from "./walk.js";

/** What a specialised walk reads from its walker on every call. */
export interface SpecializedWalker {
  readonly rootGfn: number;
  readonly permFault: Uint16Array;
}

/**
 * `(walker, memory, vaHi, vaLo, access, w) → FAST_*`: the contract of `translateFast`
 * (0: not handled, the general path must walk; 1: success with nothing to commit; 2:
 * success, the accessed/dirty commit has work).
 */
export type SpecializedTranslate = (
  walker: SpecializedWalker,
  memory: FrameSource,
  vaHi: number,
  vaLo: number,
  access: number,
  w: Walk,
) => number;

/** Compiled functions by the source they came from (formats are few and shared). */
const compiled = new Map<string, SpecializedTranslate | null>();

/**
 * The specialised fast path for `f`, or null when code generation is unavailable. The
 * caller has checked that `f` is eligible for the fast path (x86, 8-byte entries, 4 or 5
 * levels with the architectural index split, no PDPTE registers, no protection keys).
 */
export function specializeX86(f: PagingFormat): SpecializedTranslate | null {
  const source = x86Source(f);
  let fn = compiled.get(source);
  if (fn === undefined) {
    try {
      fn = new Function(source)() as SpecializedTranslate;
    } catch {
      fn = null;
    }
    compiled.set(source, fn);
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

function x86Source(f: PagingFormat): string {
  const above = 64 - f.addressBits;
  const lines: string[] = [];
  const emit = (s: string) => lines.push(s);
  // The end of a successful walk whose leaf is at `level`, `depth` entries read.
  const finish = (level: number, depth: number) => {
    const shift = level * 9 + 3;
    const offsetMask = 2 ** shift - 1;
    emit(`all &= lo; xd |= hi;`);
    emit(`const eff = ((all >>> 1) & 3) | ((xd & ${hex(f.xdMaskHi)}) === 0 ? 4 : 0);`);
    emit(`if (((walker.permFault[access & 0x1f] >>> eff) & 1) !== 0) return 0;`);
    emit(`w.vaHi = vaHi; w.vaLo = vaLo; w.access = access; w.registerMask = 0; w.missingMask = 0;`);
    emit(
      `w.address = (hi & 0xfffff) * 0x100000000 + ((lo & ${hex(~offsetMask & 0xfffff000)}) >>> 0) + ((vaLo & ${hex(offsetMask)}) >>> 0);`,
    );
    emit(`w.pageShift = ${shift}; w.effective = eff; w.pkey = (hi >>> 27) & 15;`);
    emit(`w.fault = 0; w.reason = 0; w.errorCode = 0; w.faultLevel = 0;`);
    emit(`w.depth = ${depth}; w.accessedCount = ${depth}; w.setDirty = (access & 1) !== 0;`);
    // FAST_CLEAN when every A (bit 5) is set, and D (bit 6) on the leaf if this is a write.
    emit(`return (all & 0x20) !== 0 && ((access & 1) === 0 || (lo & 0x40) !== 0) ? 1 : 2;`);
  };
  emit(`"use strict";`);
  emit(`return function translateX86${f.levels}(walker, mem, vaHi, vaLo, access, w) {`);
  emit(`if ((vaHi << ${above}) >> ${above} !== (vaHi | 0)) return 0;`);
  emit(`const fc = mem.currentFrameCache();`);
  emit(`const tags = fc.gfn, frames = fc.words, bases = fc.base, mask = fc.mask;`);
  emit(`const halves = w.halves, wLevel = w.level, wAddr = w.entryAddr;`);
  emit(`let g = walker.rootGfn, all = -1, xd = 0, lo = 0, hi = 0, index = 0, slot = 0, at = 0, words = null;`);
  for (let l = f.levels, d = 0; l >= 1; l--, d++) {
    emit(`index = ${indexOf(l)}; slot = g & mask;`);
    emit(`if (tags[slot] === g) { words = frames[slot]; at = bases[slot] + index * 2; }`);
    emit(`else { words = mem.frameWords(g); if (words === null) return 0; at = mem.frameBase + index * 2; }`);
    emit(`lo = words[at] | 0; hi = words[at + 1] | 0;`);
    // w.lo[d], w.hi[d], w.newLo[d], w.newHi[d] (MAX_LEVELS = 5 words apart).
    emit(`wLevel[${d}] = ${l}; wAddr[${d}] = g * 4096 + index * 8;`);
    emit(`halves[${d}] = halves[${d + 10}] = lo; halves[${d + 5}] = halves[${d + 15}] = hi;`);
    emit(`if ((lo & 1) === 0) return 0;`);
    const leafLo = f.rsvdLo[l * 2 + 1] | 0;
    const leafHi = f.rsvdHi[l * 2 + 1] | 0;
    if (l === 1) {
      emit(`if ((lo & ${leafLo}) !== 0 || (hi & ${leafHi}) !== 0) return 0;`);
      finish(1, d + 1);
      break;
    }
    if ((f.largeLevels >>> l) & 1) {
      emit(`if ((lo & 0x80) !== 0) {`);
      emit(`if ((lo & ${leafLo}) !== 0 || (hi & ${leafHi}) !== 0) return 0;`);
      finish(l, d + 1);
      emit(`}`);
    }
    emit(`if ((lo & ${f.rsvdLo[l * 2] | 0}) !== 0 || (hi & ${f.rsvdHi[l * 2] | 0}) !== 0) return 0;`);
    emit(`all &= lo; xd |= hi;`);
    emit(`g = (hi & 0xfffff) * 0x100000 + (lo >>> 12);`);
  }
  emit(`};`);
  return lines.join("\n");
}
