/**
 * Host physical memory: 4 KiB frames with reference counts.
 *
 * ```
 *  chunks[c]: Uint32Array of 512 frames × 1024 words (2 MiB), allocated on first use
 *  frame f  → chunks[f >>> 9], words (f & 511) * 1024 .. +1023
 *  refs[c]  : Uint32Array(512), the reference count of each frame in chunk c
 * ```
 * Frames are handed out from a free stack first, then in order, so chunks fill densely
 * and untouched capacity costs nothing.
 */

import type { FrameCache, FrameSource } from "./frame-source.js";
import { CMPXCHG_NOT_RAM, compareExchangeWords, EMPTY_FRAME_CACHE, FRAME_WORDS } from "./frame-source.js";

const CHUNK_FRAMES = 512;
const CHUNK_SHIFT = 9;

/** Thrown when host memory has no free frame left. */
export class HostMemoryExhaustedError extends Error {
  override name = "HostMemoryExhaustedError";
}

export class HostMemory implements FrameSource {
  /** Capacity in frames. */
  readonly capacity: number;
  frameBase = 0;
  private readonly chunks: (Uint32Array | undefined)[] = [];
  private readonly refs: (Uint32Array | undefined)[] = [];
  private free: Int32Array = new Int32Array(64);
  private freeCount = 0;
  private nextUnused = 0;
  private used = 0;
  /** Chunks handed out by `allocContiguous` whose storage is created on first touch. */
  private readonly reserved = new Set<number>();

  /** @param capacityBytes host memory size; a multiple of 4 KiB. */
  constructor(capacityBytes: number) {
    if (!Number.isSafeInteger(capacityBytes) || capacityBytes <= 0 || capacityBytes % 4096 !== 0)
      throw new RangeError(`host memory size ${capacityBytes} is not a positive multiple of 4096`);
    this.capacity = capacityBytes / 4096;
  }

  /** Frames currently allocated. */
  get framesInUse(): number {
    return this.used;
  }

  /** Allocates a zeroed frame with reference count 1. */
  alloc(): number {
    let f: number;
    if (this.freeCount > 0) f = this.free[--this.freeCount];
    else if (this.nextUnused < this.capacity) f = this.nextUnused++;
    else
      throw new HostMemoryExhaustedError(
        `host memory exhausted: all ${this.capacity} frames (${this.capacity * 4} KiB) are in use`,
      );
    const c = f >>> CHUNK_SHIFT;
    let words = this.chunks[c];
    if (!words) {
      words = new Uint32Array(CHUNK_FRAMES * FRAME_WORDS);
      this.chunks[c] = words;
      this.refs[c] = new Uint32Array(CHUNK_FRAMES);
    } else {
      const b = (f & (CHUNK_FRAMES - 1)) * FRAME_WORDS;
      words.fill(0, b, b + FRAME_WORDS);
    }
    this.refs[c]![f & (CHUNK_FRAMES - 1)] = 1;
    this.used++;
    return f;
  }

  /**
   * Allocates `count` physically contiguous frames aligned to `count` (a power of two of at
   * least 512: a 2 MiB or 1 GiB host huge page), each with reference count 1 and zeroed.
   * Storage is created chunk by chunk when first touched, so a 1 GiB page costs only what
   * is used. Returns the first frame.
   */
  allocContiguous(count: number): number {
    if (!Number.isInteger(count) || count < CHUNK_FRAMES || (count & (count - 1)) !== 0)
      throw new RangeError(
        `contiguous allocation of ${count} frames: not a power of two of at least ${CHUNK_FRAMES}`,
      );
    const base = Math.ceil(this.nextUnused / count) * count;
    if (base + count > this.capacity)
      throw new HostMemoryExhaustedError(
        `host memory exhausted: no ${count * 4} KiB contiguous range left in ${this.capacity * 4} KiB`,
      );
    // Frames skipped to align the range stay usable one by one.
    for (let f = this.nextUnused; f < base; f++) this.pushFree(f);
    this.nextUnused = base + count;
    for (let c = base >>> CHUNK_SHIFT; c < (base + count) >>> CHUNK_SHIFT; c++) this.reserved.add(c);
    this.used += count;
    return base;
  }

  /** Takes another reference to an allocated frame. */
  get(hfn: number): void {
    const r = this.refsOf(hfn);
    r[hfn & (CHUNK_FRAMES - 1)]++;
  }

  /** Drops a reference; the frame is freed when the count reaches zero. */
  put(hfn: number): void {
    const r = this.refsOf(hfn);
    const i = hfn & (CHUNK_FRAMES - 1);
    if (--r[i] === 0) {
      this.pushFree(hfn);
      this.used--;
    }
  }

  private pushFree(hfn: number): void {
    if (this.freeCount === this.free.length) {
      const grown = new Int32Array(this.free.length * 2);
      grown.set(this.free);
      this.free = grown;
    }
    this.free[this.freeCount++] = hfn;
  }

  /** Creates the storage of a chunk reserved by `allocContiguous` (all its frames in use). */
  private materialize(c: number): boolean {
    if (!this.reserved.delete(c)) return false;
    this.chunks[c] = new Uint32Array(CHUNK_FRAMES * FRAME_WORDS);
    this.refs[c] = new Uint32Array(CHUNK_FRAMES).fill(1);
    return true;
  }

  /** Reference count of a frame (0 when free). */
  refCount(hfn: number): number {
    if (this.reserved.has(hfn >>> CHUNK_SHIFT)) return 1;
    const r = this.refs[hfn >>> CHUNK_SHIFT];
    return r ? r[hfn & (CHUNK_FRAMES - 1)] : 0;
  }

  frameWords(hfn: number): Uint32Array | null {
    // Literals for CHUNK_SHIFT (9), CHUNK_FRAMES - 1 and FRAME_WORDS: every walk step calls
    // this, and each use of a module constant is a load and a hole check in V8.
    let words = this.chunks[hfn >>> 9];
    if (words === undefined) {
      if (hfn < 0 || !this.materialize(hfn >>> CHUNK_SHIFT)) return null;
      words = this.chunks[hfn >>> CHUNK_SHIFT]!;
    }
    this.frameBase = (hfn & 511) * 1024;
    return words;
  }

  /** `frameWords` is one array lookup with no side effects: walkers need no cache in front of it. */
  currentFrameCache(): FrameCache {
    return EMPTY_FRAME_CACHE;
  }

  /** The words of an allocated frame and its base index (`words[base .. base+1023]`). */
  frame(hfn: number): { words: Uint32Array; base: number } {
    this.refsOf(hfn);
    const words = this.frameWords(hfn)!;
    return { words, base: this.frameBase };
  }

  compareExchange(
    pa: number,
    bytes: 4 | 8,
    expLo: number,
    expHi: number,
    newLo: number,
    newHi: number,
  ): number {
    const words = this.frameWords(Math.floor(pa / 4096));
    if (!words) return CMPXCHG_NOT_RAM;
    return compareExchangeWords(words, this.frameBase, pa % 4096, bytes, expLo, expHi, newLo, newHi);
  }

  private refsOf(hfn: number): Uint32Array {
    if (Number.isInteger(hfn) && hfn >= 0) this.materialize(hfn >>> CHUNK_SHIFT);
    const r = this.refs[hfn >>> CHUNK_SHIFT];
    if (!Number.isInteger(hfn) || hfn < 0 || !r || r[hfn & (CHUNK_FRAMES - 1)] === 0)
      throw new RangeError(`host frame ${hfn} is not allocated`);
    return r;
  }
}
