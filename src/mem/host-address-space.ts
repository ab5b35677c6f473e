/**
 * The VMM process's virtual address space: host virtual pages (HVA >> 12) → host frames.
 *
 * Memslots point guest memory at host virtual ranges; what backs a host virtual page
 * can change under the VM (swap-out, migration, sharing), and every such change is
 * announced to the registered listeners first, like Linux MMU notifiers, so host MMUs
 * can drop their mappings. Pages are populated on first touch: a guest that maps
 * gigabytes but touches little costs little.
 *
 * ```
 *  table: Map(hvaPage >>> 9 → Int32Array(512)), each slot hfn + 1 (0 = not populated)
 * ```
 */

import type { HostMemory } from "./host-memory.js";

/** Called before the host pages [firstPage, firstPage + count) change or disappear. */
export type InvalidateListener = (firstPage: number, count: number) => void;

export class HostAddressSpace {
  private readonly table = new Map<number, Int32Array>();
  private readonly listeners: InvalidateListener[] = [];
  private lastKey = -1;
  private lastLeaf: Int32Array | undefined;

  constructor(readonly memory: HostMemory) {}

  /** The host frame behind a host virtual page, allocating a zeroed one on first touch. */
  frameOf(hvaPage: number): number {
    const key = Math.floor(hvaPage / 512);
    let leaf = key === this.lastKey ? this.lastLeaf : this.table.get(key);
    if (!leaf) {
      leaf = new Int32Array(512);
      this.table.set(key, leaf);
    }
    this.lastKey = key;
    this.lastLeaf = leaf;
    const i = hvaPage - key * 512;
    let slot = leaf[i];
    if (slot === 0) {
      slot = this.memory.alloc() + 1;
      leaf[i] = slot;
    }
    return slot - 1;
  }

  /** The host frame behind a page if populated, else -1 (never allocates). */
  peek(hvaPage: number): number {
    const leaf = this.table.get(Math.floor(hvaPage / 512));
    return leaf ? leaf[hvaPage % 512] - 1 : -1;
  }

  /** Registers a listener for invalidations (see `InvalidateListener`). */
  onInvalidate(listener: InvalidateListener): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /**
   * Drops the backing of [firstPage, firstPage + count) (swap-out, MADV_DONTNEED); the next
   * touch populates fresh zeroed frames. Listeners run first.
   */
  discard(firstPage: number, count: number): void {
    this.notify(firstPage, count);
    for (let p = firstPage; p < firstPage + count; p++) {
      const leaf = this.table.get(Math.floor(p / 512));
      if (!leaf || leaf[p % 512] === 0) continue;
      this.memory.put(leaf[p % 512] - 1);
      leaf[p % 512] = 0;
    }
  }

  /** Moves a page to a new host frame with the same contents (migration, compaction). */
  migrate(hvaPage: number): number {
    const old = this.peek(hvaPage);
    if (old < 0) return this.frameOf(hvaPage);
    this.notify(hvaPage, 1);
    const next = this.memory.alloc();
    const src = this.memory.frame(old);
    const dst = this.memory.frame(next);
    dst.words.set(src.words.subarray(src.base, src.base + 1024), dst.base);
    this.table.get(Math.floor(hvaPage / 512))![hvaPage % 512] = next + 1;
    this.memory.put(old);
    return next;
  }

  /** Releases every populated page (VM teardown). */
  releaseAll(): void {
    for (const leaf of this.table.values())
      for (let i = 0; i < 512; i++) if (leaf[i] !== 0) this.memory.put(leaf[i] - 1);
    this.table.clear();
    this.lastKey = -1;
    this.lastLeaf = undefined;
  }

  private notify(firstPage: number, count: number): void {
    for (const l of this.listeners) l(firstPage, count);
  }
}
