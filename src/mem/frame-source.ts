/**
 * The walker's view of physical memory: whole 4 KiB frames as 32-bit words.
 *
 * A frame lives somewhere in a word array (a chunk of host memory, a dump segment);
 * `frameWords(gfn)` returns that array and leaves the index of the frame's first
 * word in `frameBase`, so a paging-structure entry is read with one or two typed-array
 * loads and no allocation. Implementations: `GuestPhysical` (memslots over host
 * memory), `DumpMemory` (a guest memory dump), `HostMemory` (host tables), and the
 * 2-D walker's translating view.
 */
export interface FrameSource {
  /**
   * The word array holding frame `gfn`, with `frameBase` set to the frame's first word;
   * or null when the frame is not RAM (MMIO, no memslot, outside the dump).
   * `frameBase` is valid until the next call.
   */
  frameWords(gfn: number): Uint32Array | null;
  /** See `frameWords`. */
  readonly frameBase: number;
  /**
   * Atomically replaces the 4- or 8-byte entry at physical address `pa` if it still holds
   * (expLo, expHi), as the processor's locked A/D update does. Returns a CMPXCHG_* status.
   */
  compareExchange(
    pa: number,
    bytes: 4 | 8,
    expLo: number,
    expHi: number,
    newLo: number,
    newHi: number,
  ): number;
  /**
   * Optional, for walkers' fast paths: a direct-mapped cache of `frameWords` results that
   * the caller may probe itself, brought up to date first (emptied if the memory's layout
   * changed since it was filled). Entries stay current until the layout changes again,
   * which nothing in a pure walk does. A probe that misses proves nothing: the caller must
   * then use `frameWords`, which also fills the cache.
   */
  currentFrameCache?(): FrameCache;
  /**
   * Optional, for sources whose `frameWords` has effects (the 2-D walk's translating view
   * counts references and walks the host tables): a walker's fast path read some frames,
   * then handed the walk to the general path, which reads the same frames again in the same
   * order. The source serves those repeats from what it recorded since the walk began,
   * without the effects, so a walk is counted once whichever path finished it.
   */
  rewind?(): void;
}

/**
 * A frame cache exposed by `FrameSource.currentFrameCache`: entry `gfn & mask` holds frame
 * `gfn[i]` (NaN when empty), found in `words[i]` from word `base[i]`, as `frameWords` and
 * `frameBase` would return it.
 */
export interface FrameCache {
  readonly mask: number;
  readonly gfn: Float64Array;
  readonly words: Uint32Array[];
  readonly base: Int32Array;
}

/**
 * A frame cache that holds nothing: for sources whose `frameWords` is already a cheap, side-
 * effect-free lookup (host memory), so walkers over them can take the same fast path. A
 * source hands it out always or never: walkers compile their fast path for such a source
 * without the probe (src/walk/specialize.ts).
 */
export const EMPTY_FRAME_CACHE: FrameCache = Object.freeze({
  mask: 0,
  gfn: new Float64Array([Number.NaN]),
  words: [new Uint32Array(0)],
  base: new Int32Array(1),
});

export const CMPXCHG_OK = 0;
/** The entry no longer holds the expected value; nothing was written. */
export const CMPXCHG_CHANGED = 1;
/** The frame is not writable (read-only memslot, read-only dump); nothing was written. */
export const CMPXCHG_READONLY = 2;
/** The address is not RAM. */
export const CMPXCHG_NOT_RAM = 3;

/** Number of 32-bit words in a 4 KiB frame. */
export const FRAME_WORDS = 1024;

/**
 * Compare-exchange on a frame already located by `frameWords` (shared by implementations
 * that have no write restrictions of their own).
 */
export function compareExchangeWords(
  words: Uint32Array,
  base: number,
  offsetInFrame: number,
  bytes: 4 | 8,
  expLo: number,
  expHi: number,
  newLo: number,
  newHi: number,
): number {
  const i = base + (offsetInFrame >>> 2);
  if (bytes === 8) {
    if (words[i] !== expLo >>> 0 || words[i + 1] !== expHi >>> 0) return CMPXCHG_CHANGED;
    words[i] = newLo;
    words[i + 1] = newHi;
  } else {
    if (words[i] !== expLo >>> 0) return CMPXCHG_CHANGED;
    words[i] = newLo;
  }
  return CMPXCHG_OK;
}
