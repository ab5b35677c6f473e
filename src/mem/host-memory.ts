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

import type { FrameSource } from "./frame-source.js";
import { CMPXCHG_NOT_RAM, compareExchangeWords, FRAME_WORDS } from "./frame-source.js";

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
      if (this.freeCount === this.free.length) {
        const grown = new Int32Array(this.free.length * 2);
        grown.set(this.free);
        this.free = grown;
      }
      this.free[this.freeCount++] = hfn;
      this.used--;
    }
  }

  /** Reference count of a frame (0 when free). */
  refCount(hfn: number): number {
    const r = this.refs[hfn >>> CHUNK_SHIFT];
    return r ? r[hfn & (CHUNK_FRAMES - 1)] : 0;
  }

  frameWords(hfn: number): Uint32Array | null {
    const words = this.chunks[hfn >>> CHUNK_SHIFT];
    if (words === undefined || hfn < 0) return null;
    this.frameBase = (hfn & (CHUNK_FRAMES - 1)) * FRAME_WORDS;
    return words;
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
    const r = this.refs[hfn >>> CHUNK_SHIFT];
    if (!Number.isInteger(hfn) || hfn < 0 || !r || r[hfn & (CHUNK_FRAMES - 1)] === 0)
      throw new RangeError(`host frame ${hfn} is not allocated`);
    return r;
  }
}
