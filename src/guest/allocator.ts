/**
 * The guest kernel's physical page allocator: every guest frame the RAM provides, what it
 * is used for, and a reference count for user pages shared copy-on-write.
 *
 * Deterministic by construction: 4 KiB pages come from the lowest free frame at or above a
 * cursor (wrapping); huge pages from the highest free aligned run, so small allocations and
 * huge ones grow from opposite ends of RAM (less fragmentation, like a buddy allocator's
 * separate orders). No randomness, no dependence on the MMU underneath.
 */

/** Frame uses (one byte per frame). */
export const PAGE_NONE = 0;
export const PAGE_FREE = 1;
/** Reserved (frame 0, like Linux; never handed out). */
export const PAGE_RESERVED = 2;
/** A kernel table shared by every process (direct map, kernel half). */
export const PAGE_KERNEL_TABLE = 3;
/** A table of one process's user half (including its root). */
export const PAGE_USER_TABLE = 4;
/** A user data page (4 KiB, or part of a huge page). */
export const PAGE_USER = 5;

export const PAGE_USE_NAMES = ["none", "free", "reserved", "kernelTable", "userTable", "user"] as const;

export interface MemoryCounts {
  /** Frames of RAM the allocator manages (including reserved). */
  total: number;
  free: number;
  reserved: number;
  kernelTable: number;
  userTable: number;
  user: number;
}

export class PageAllocator {
  /** [gfn] → PAGE_* (PAGE_NONE outside RAM). */
  readonly use: Uint8Array;
  /** [gfn] → references to a user page (head frame of a huge page). */
  readonly refs: Uint32Array;
  private readonly counts = new Float64Array(PAGE_USE_NAMES.length);
  private cursor = 0;

  /**
   * @param frames frames addressable (0..frames-1)
   * @param ram [firstGfn, pages] ranges of RAM
   */
  constructor(frames: number, ram: readonly (readonly [number, number])[]) {
    this.use = new Uint8Array(frames);
    this.refs = new Uint32Array(frames);
    this.counts[PAGE_NONE] = frames;
    for (const [first, pages] of ram)
      for (let g = first; g < first + pages && g < frames; g++) this.set(g, PAGE_FREE);
    if (this.use[0] === PAGE_FREE) this.set(0, PAGE_RESERVED);
  }

  get frames(): number {
    return this.use.length;
  }

  /** Frames currently free. */
  get free(): number {
    return this.counts[PAGE_FREE];
  }

  /** One 4 KiB frame for `use`, or -1 when RAM is exhausted. */
  alloc(use: number): number {
    const n = this.use.length;
    if (this.counts[PAGE_FREE] === 0) return -1;
    for (let i = 0; i < n; i++) {
      const g = (this.cursor + i) % n;
      if (this.use[g] === PAGE_FREE) {
        this.cursor = g + 1;
        this.set(g, use);
        this.refs[g] = use === PAGE_USER ? 1 : 0;
        return g;
      }
    }
    return -1;
  }

  /** `pages` contiguous frames aligned to `pages` (a power of two) for user memory, or -1. */
  allocHuge(pages: number): number {
    if (this.counts[PAGE_FREE] < pages) return -1;
    for (let base = Math.floor((this.use.length - pages) / pages) * pages; base >= 0; base -= pages) {
      let ok = true;
      for (let g = base + pages - 1; g >= base; g--)
        if (this.use[g] !== PAGE_FREE) {
          ok = false;
          break;
        }
      if (!ok) continue;
      for (let g = base; g < base + pages; g++) this.set(g, PAGE_USER);
      this.refs[base] = 1;
      return base;
    }
    return -1;
  }

  /** Returns `pages` frames from `gfn` to the free pool. */
  release(gfn: number, pages = 1): void {
    for (let g = gfn; g < gfn + pages; g++) {
      const u = this.use[g];
      if (u === PAGE_FREE || u === PAGE_NONE || u === PAGE_RESERVED)
        throw new Error(`guest allocator: frame 0x${g.toString(16)} freed while ${PAGE_USE_NAMES[u]}`);
      this.refs[g] = 0;
      this.set(g, PAGE_FREE);
    }
  }

  /** Adds a reference to a user page (head frame). */
  get(gfn: number): void {
    if (this.use[gfn] !== PAGE_USER)
      throw new Error(`guest allocator: 0x${gfn.toString(16)} is not a user page`);
    this.refs[gfn]++;
  }

  /** Drops a reference; frees the page (and its `pages` frames) at zero. Returns the count left. */
  put(gfn: number, pages = 1): number {
    if (this.use[gfn] !== PAGE_USER || this.refs[gfn] === 0)
      throw new Error(`guest allocator: put of 0x${gfn.toString(16)} without a reference`);
    const left = --this.refs[gfn];
    if (left === 0) this.release(gfn, pages);
    return left;
  }

  /** Frames by use. */
  snapshot(): MemoryCounts {
    const c = this.counts;
    return {
      total: c[PAGE_FREE] + c[PAGE_RESERVED] + c[PAGE_KERNEL_TABLE] + c[PAGE_USER_TABLE] + c[PAGE_USER],
      free: c[PAGE_FREE],
      reserved: c[PAGE_RESERVED],
      kernelTable: c[PAGE_KERNEL_TABLE],
      userTable: c[PAGE_USER_TABLE],
      user: c[PAGE_USER],
    };
  }

  private set(g: number, use: number): void {
    this.counts[this.use[g]]--;
    this.use[g] = use;
    this.counts[use]++;
  }
}
