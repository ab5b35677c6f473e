/**
 * Dirty-log bookkeeping shared by the host MMUs: the memslot's bitmap is the record, the MMU
 * write-protects what it reports so the next write is seen again (KVM_GET_DIRTY_LOG, and the
 * manual-protect KVM_CLEAR_DIRTY_LOG).
 */

import type { Memslot, Memslots } from "../mem/memslots.js";

export interface DirtyBits {
  slot: Memslot;
  /** The bits as they were before the call (one per page of the slot). */
  bits: Uint32Array;
}

/** Copies and clears the slot's whole bitmap. */
export function takeDirtyLog(memslots: Memslots, slotId: number): DirtyBits {
  const slot = loggingSlot(memslots, slotId);
  const bits = slot.dirtyBitmap!.slice();
  slot.dirtyBitmap!.fill(0);
  return { slot, bits };
}

/** Clears the pages [first, first + count) of the slot's bitmap; returns the bits from before. */
export function clearDirtyRange(memslots: Memslots, slotId: number, first: number, count: number): DirtyBits {
  const slot = loggingSlot(memslots, slotId);
  if (
    !Number.isInteger(first) ||
    !Number.isInteger(count) ||
    first < 0 ||
    count < 0 ||
    first + count > slot.pages
  )
    throw new RangeError(`pages ${first}..+${count} are outside memslot ${slotId} (${slot.pages} pages)`);
  const bm = slot.dirtyBitmap!;
  const bits = bm.slice();
  for (let p = first; p < first + count; p++) bm[p >>> 5] &= ~(1 << (p & 31));
  return { slot, bits };
}

/** Calls `fn(firstPage, pages)` for each run of set bits in [first, first + count). */
export function forEachDirtyRun(
  bits: Uint32Array,
  first: number,
  count: number,
  fn: (page: number, pages: number) => void,
): void {
  let runStart = -1;
  for (let p = first; p <= first + count; p++) {
    const set = p < first + count && ((bits[p >>> 5] >>> (p & 31)) & 1) === 1;
    if (set && runStart < 0) runStart = p;
    else if (!set && runStart >= 0) {
      fn(runStart, p - runStart);
      runStart = -1;
    }
  }
}

function loggingSlot(memslots: Memslots, slotId: number): Memslot {
  const slot = memslots.get(slotId);
  if (!slot.dirtyBitmap) throw new RangeError(`memslot ${slotId} does not log dirty pages`);
  return slot;
}
