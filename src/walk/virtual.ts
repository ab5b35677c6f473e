/**
 * Guest-virtual reads and writes that may cross page boundaries. Every page the access
 * touches is translated first; memory is touched only if all translations succeed, so a
 * faulting write writes nothing (as a processor's access is all-or-nothing per instruction).
 */

import { ACCESS_WRITE } from "../arch/access.js";
import { hi32, lo32, toU64, type U64Input } from "../arch/u64.js";
import type { GuestPhysical } from "../mem/guest-physical.js";
import { describeWalk, type WalkFault } from "./translation.js";
import { Walk } from "./walk.js";
import type { GuestWalker } from "./walker.js";

export type VirtualResult<T> =
  | { ok: true; value: T }
  | { ok: false; fault: WalkFault }
  | { ok: false; mmio: bigint };

export class VirtualMemory {
  private readonly w = new Walk();

  constructor(
    readonly walker: GuestWalker,
    readonly physical: GuestPhysical,
  ) {}

  /** Reads `length` bytes at `va` with the access descriptor `access` (ACCESS_* bits, no WRITE). */
  read(va: U64Input, length: number, access: number): VirtualResult<Uint8Array> {
    const pieces = this.translateRange(va, length, access & ~ACCESS_WRITE);
    if (!Array.isArray(pieces)) return pieces;
    const out = new Uint8Array(length);
    let done = 0;
    for (const [pa, n] of pieces) {
      if (this.physical.readBytes(pa, out.subarray(done, done + n)) !== "ok")
        return { ok: false, mmio: BigInt(pa) };
      done += n;
    }
    return { ok: true, value: out };
  }

  /** Writes `data` at `va` (the access descriptor gets WRITE added). */
  write(va: U64Input, data: Uint8Array, access: number): VirtualResult<number> {
    const pieces = this.translateRange(va, data.length, access | ACCESS_WRITE);
    if (!Array.isArray(pieces)) return pieces;
    let done = 0;
    for (const [pa, n] of pieces) {
      const r = this.physical.writeBytes(pa, data.subarray(done, done + n));
      if (r !== "ok") return { ok: false, mmio: BigInt(pa) };
      done += n;
    }
    return { ok: true, value: data.length };
  }

  /** Translates each page of [va, va+length); a list of (physical address, byte count) or the first fault. */
  private translateRange(
    vaIn: U64Input,
    length: number,
    access: number,
  ): [number, number][] | VirtualResult<never> {
    if (!Number.isSafeInteger(length) || length < 0)
      throw new RangeError(`length ${length} is not a byte count`);
    const start = toU64(vaIn, "virtual address");
    const pieces: [number, number][] = [];
    let off = 0;
    while (off < length) {
      const va = (start + BigInt(off)) & 0xffff_ffff_ffff_ffffn;
      if (!this.walker.walk(hi32(va), lo32(va), access, this.w))
        return { ok: false, fault: describeWalk(this.w).fault! };
      const inPage = 4096 - Number(va & 0xfffn);
      const n = Math.min(inPage, length - off);
      pieces.push([this.w.address, n]);
      off += n;
    }
    return pieces;
  }
}
