/**
 * Guest-physical memory: reads, writes and compare-exchange at a guest-physical address,
 * resolved through the memslots to host frames. An address no memslot covers is MMIO:
 * reported as such, never an exception; a write to a read-only slot is reported too.
 * Writes to a slot with dirty logging set its dirty bit.
 */

import type { FrameCache, FrameSource } from "./frame-source.js";
import { CMPXCHG_NOT_RAM, CMPXCHG_OK, CMPXCHG_READONLY, compareExchangeWords } from "./frame-source.js";
import { HostAddressSpace } from "./host-address-space.js";
import type { HostMemory } from "./host-memory.js";
import { type Memslots, markDirty } from "./memslots.js";

/** Outcome of a physical access. */
export type PhysStatus = "ok" | "mmio" | "readonly";

export interface PhysRead {
  status: "ok" | "mmio";
  /** The little-endian value read (0n for MMIO). */
  value: bigint;
}

/**
 * Frame cache size (a power of two). Page walks read one entry from each of a few table
 * frames, and the same table frames again and again, so a small direct-mapped cache in
 * front of the memslot search and the host page table (a Map lookup and a floating-point
 * division on the uncached path) turns most `frameWords` calls into a tag compare and three
 * loads: 1.7–2× more walks per second in bench/walk.bench.ts (BENCHMARKS.md). 4096 entries
 * (80 KiB): the benchmark's 133 randomly placed table frames still conflicted at 1024 (7.8 %
 * of walks took the miss path), which cost the compiled fast path 7–10 % (A/B); a flush
 * (memslot or host mapping change, both rare) fills 32 KiB.
 */
const FRAME_CACHE_SIZE = 4096;
const FRAME_CACHE_MASK = FRAME_CACHE_SIZE - 1;
const NO_WORDS = new Uint32Array(0);

export class GuestPhysical implements FrameSource {
  frameBase = 0;
  readonly hostSpace: HostAddressSpace;
  /**
   * The frame cache: entry `gfn & FRAME_CACHE_MASK` holds gfn (NaN when empty), its word
   * array and base. It only ever holds what the uncached lookup would return: it is
   * emptied whenever the memslots' generation or the host address space's epoch differs
   * from the one it was filled under (any slot change; any host page discarded, migrated or
   * released). Typed arrays for the tags and bases, one packed array of word arrays, so
   * the hit path stays monomorphic and allocation-free.
   */
  private readonly cacheGfn = new Float64Array(FRAME_CACHE_SIZE).fill(Number.NaN);
  private readonly cacheBase = new Int32Array(FRAME_CACHE_SIZE);
  private readonly cacheWords: Uint32Array[] = new Array<Uint32Array>(FRAME_CACHE_SIZE).fill(NO_WORDS);
  private cacheGeneration = -1;
  private cacheEpoch = -1;
  /** The same arrays, for `currentFrameCache`. */
  private readonly cacheView: FrameCache = {
    mask: FRAME_CACHE_MASK,
    gfn: this.cacheGfn,
    words: this.cacheWords,
    base: this.cacheBase,
  };

  constructor(
    readonly memslots: Memslots,
    hostSpaceOrMemory: HostAddressSpace | HostMemory,
  ) {
    this.hostSpace =
      hostSpaceOrMemory instanceof HostAddressSpace
        ? hostSpaceOrMemory
        : new HostAddressSpace(hostSpaceOrMemory);
  }

  get hostMemory(): HostMemory {
    return this.hostSpace.memory;
  }

  frameWords(gfn: number): Uint32Array | null {
    // Hit path kept small so V8 inlines it into the walker; misses go to lookupFrame.
    const i = gfn & FRAME_CACHE_MASK;
    if (
      this.cacheGfn[i] === gfn &&
      this.cacheGeneration === this.memslots.generation &&
      this.cacheEpoch === this.hostSpace.epoch
    ) {
      this.frameBase = this.cacheBase[i];
      return this.cacheWords[i];
    }
    return this.lookupFrame(gfn, i);
  }

  /** See `FrameSource.currentFrameCache`. */
  currentFrameCache(): FrameCache {
    if (this.cacheGeneration !== this.memslots.generation || this.cacheEpoch !== this.hostSpace.epoch)
      this.resetCache();
    return this.cacheView;
  }

  private resetCache(): void {
    this.cacheGfn.fill(Number.NaN);
    this.cacheWords.fill(NO_WORDS);
    this.cacheGeneration = this.memslots.generation;
    this.cacheEpoch = this.hostSpace.epoch;
  }

  /** The uncached lookup: memslot, host virtual page, host frame; fills cache entry `i`. */
  private lookupFrame(gfn: number, i: number): Uint32Array | null {
    const slot = this.memslots.find(gfn);
    if (slot === undefined) return null;
    const hfn = this.hostSpace.frameOf(slot.hvaPage + (gfn - slot.baseGfn));
    const words = this.hostSpace.memory.frameWords(hfn);
    const base = this.hostSpace.memory.frameBase;
    this.frameBase = base;
    if (words !== null) {
      if (this.cacheGeneration !== this.memslots.generation || this.cacheEpoch !== this.hostSpace.epoch)
        this.resetCache();
      this.cacheGfn[i] = gfn;
      this.cacheWords[i] = words;
      this.cacheBase[i] = base;
    }
    return words;
  }

  compareExchange(
    pa: number,
    bytes: 4 | 8,
    expLo: number,
    expHi: number,
    newLo: number,
    newHi: number,
  ): number {
    const gfn = Math.floor(pa / 4096);
    const slot = this.memslots.find(gfn);
    if (slot === undefined) return CMPXCHG_NOT_RAM;
    if (slot.flags.readOnly) return CMPXCHG_READONLY;
    const words = this.frameWords(gfn)!;
    const r = compareExchangeWords(words, this.frameBase, pa % 4096, bytes, expLo, expHi, newLo, newHi);
    if (r === CMPXCHG_OK) markDirty(slot, gfn);
    return r;
  }

  /** Reads `size` bytes (1, 2, 4 or 8) little-endian. */
  read(gpa: number, size: 1 | 2 | 4 | 8): PhysRead {
    checkAccess(gpa, size);
    const bytes = new Uint8Array(size);
    if (this.readBytes(gpa, bytes) !== "ok") return { status: "mmio", value: 0n };
    return { status: "ok", value: leToBigint(bytes) };
  }

  /** Writes `size` bytes (1, 2, 4 or 8) little-endian; nothing is written unless every byte is writable RAM. */
  write(gpa: number, size: 1 | 2 | 4 | 8, value: bigint | number): PhysStatus {
    checkAccess(gpa, size);
    let v = BigInt(value);
    if (v < 0n || v >= 1n << BigInt(size * 8))
      throw new RangeError(`value ${value} does not fit in ${size} bytes`);
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i++, v >>= 8n) bytes[i] = Number(v & 0xffn);
    return this.writeBytes(gpa, bytes);
  }

  /** 8-byte compare-exchange (naturally aligned), as a locked CMPXCHG8B. */
  compareExchange64(
    gpa: number,
    expected: bigint,
    desired: bigint,
  ): { status: PhysStatus | "changed"; actual: bigint } {
    checkAccess(gpa, 8);
    if (gpa % 8 !== 0)
      throw new RangeError(`compare-exchange address 0x${gpa.toString(16)} is not 8-byte aligned`);
    const before = this.read(gpa, 8);
    if (before.status !== "ok") return { status: "mmio", actual: 0n };
    const r = this.compareExchange(gpa, 8, lo(expected), hi(expected), lo(desired), hi(desired));
    if (r === CMPXCHG_READONLY) return { status: "readonly", actual: before.value };
    if (r === CMPXCHG_OK) return { status: "ok", actual: expected };
    return { status: "changed", actual: before.value };
  }

  /** Copies guest-physical memory into `dst`; "mmio" (and nothing meaningful in dst) if any byte is not RAM. */
  readBytes(gpa: number, dst: Uint8Array): "ok" | "mmio" {
    let done = 0;
    while (done < dst.length) {
      const a = gpa + done;
      const gfn = Math.floor(a / 4096);
      const words = this.frameWords(gfn);
      if (!words) return "mmio";
      const off = a % 4096;
      const n = Math.min(4096 - off, dst.length - done);
      const view = new Uint8Array(words.buffer, words.byteOffset + this.frameBase * 4 + off, n);
      dst.set(view, done);
      done += n;
    }
    return "ok";
  }

  /** Copies `src` into guest-physical memory; nothing is written unless every page is writable RAM. */
  writeBytes(gpa: number, src: Uint8Array): PhysStatus {
    for (let p = Math.floor(gpa / 4096); p <= Math.floor((gpa + src.length - 1) / 4096); p++) {
      const slot = this.memslots.find(p);
      if (!slot) return "mmio";
      if (slot.flags.readOnly) return "readonly";
    }
    let done = 0;
    while (done < src.length) {
      const a = gpa + done;
      const gfn = Math.floor(a / 4096);
      const words = this.frameWords(gfn)!;
      const off = a % 4096;
      const n = Math.min(4096 - off, src.length - done);
      new Uint8Array(words.buffer, words.byteOffset + this.frameBase * 4 + off, n).set(
        src.subarray(done, done + n),
      );
      markDirty(this.memslots.find(gfn)!, gfn);
      done += n;
    }
    return "ok";
  }
}

function checkAccess(gpa: number, size: number): void {
  if (!Number.isSafeInteger(gpa) || gpa < 0 || gpa >= 2 ** 52)
    throw new RangeError(`guest-physical address ${gpa} is not a 52-bit address`);
  if (size !== 1 && size !== 2 && size !== 4 && size !== 8)
    throw new RangeError(`access size ${size} is not 1, 2, 4 or 8`);
}

function leToBigint(b: Uint8Array): bigint {
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  return v;
}

const lo = (v: bigint) => Number(v & 0xffffffffn);
const hi = (v: bigint) => Number((v >> 32n) & 0xffffffffn);
