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
  /**
   * Bumped whenever an existing host virtual page → host frame mapping changes or goes away
   * (discard, migrate, releaseAll), after the change. Caches of translations through this
   * space (GuestPhysical's frame cache) compare it to know they are still valid. Populating
   * a page on first touch does not bump it: that changes no existing mapping.
   */
  epoch = 0;
  private readonly table = new Map<number, Int32Array>();
  private readonly listeners: InvalidateListener[] = [];
  /** Host frame → its host virtual page + 1 (0: none), in chunks of 512 frames. */
  private readonly owners: (Float64Array | undefined)[] = [];
  /** Leaf-table key (hvaPage >>> 9) → huge-page order, for pages backed by `backHuge`. */
  private readonly hugeOrders = new Map<number, number>();
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
      this.setOwner(slot - 1, hvaPage);
    }
    return slot - 1;
  }

  /** The host frame behind a page if populated, else -1 (never allocates). */
  peek(hvaPage: number): number {
    const leaf = this.table.get(Math.floor(hvaPage / 512));
    return leaf ? leaf[hvaPage % 512] - 1 : -1;
  }

  /**
   * Backs the host virtual pages [firstHvaPage, + 2^order) with one host huge page
   * (order 9: 2 MiB, order 18: 1 GiB), like a THP or hugetlbfs mapping: contiguous, aligned
   * host frames. The range must be aligned and not yet populated.
   */
  backHuge(firstHvaPage: number, order: 9 | 18): void {
    const count = 2 ** order;
    if (!Number.isInteger(firstHvaPage) || firstHvaPage < 0 || firstHvaPage % count !== 0)
      throw new RangeError(
        `host virtual page ${firstHvaPage} is not aligned to a ${count * 4} KiB huge page`,
      );
    for (let p = firstHvaPage; p < firstHvaPage + count; p += 512) {
      const leaf = this.table.get(Math.floor(p / 512));
      if (leaf?.some((x) => x !== 0))
        throw new RangeError(
          `host virtual pages near ${p} are already populated; cannot back them with a huge page`,
        );
    }
    const base = this.memory.allocContiguous(count);
    for (let p = firstHvaPage; p < firstHvaPage + count; p += 512) {
      const key = Math.floor(p / 512);
      const leaf = new Int32Array(512);
      for (let i = 0; i < 512; i++) {
        leaf[i] = base + (p - firstHvaPage) + i + 1;
        this.setOwner(base + (p - firstHvaPage) + i, p + i);
      }
      this.table.set(key, leaf);
      this.hugeOrders.set(key, order);
    }
    this.lastKey = -1;
    this.lastLeaf = undefined;
  }

  /** log2 of the host huge page backing `hvaPage` (0 for a normal 4 KiB page). */
  hugeOrder(hvaPage: number): number {
    return this.hugeOrders.get(Math.floor(hvaPage / 512)) ?? 0;
  }

  /** A change to one page of a huge page breaks it up: its frames are no longer one unit. */
  private breakHuge(hvaPage: number): void {
    const order = this.hugeOrder(hvaPage);
    if (order === 0) return;
    const count = 2 ** order;
    const first = hvaPage - (hvaPage % count);
    for (let p = first; p < first + count; p += 512) this.hugeOrders.delete(Math.floor(p / 512));
  }

  /**
   * The host virtual page a host frame backs, or -1 (the reverse of `frameOf`, kept in
   * chunked typed arrays: host MMUs use it to find the guest frame of a mapping without a
   * per-mapping record).
   */
  hvaPageOf(hfn: number): number {
    const chunk = this.owners[Math.floor(hfn / 512)];
    return chunk === undefined ? -1 : chunk[hfn % 512] - 1;
  }

  private setOwner(hfn: number, hvaPage: number): void {
    const c = Math.floor(hfn / 512);
    let chunk = this.owners[c];
    if (chunk === undefined) {
      chunk = new Float64Array(512);
      this.owners[c] = chunk;
    }
    chunk[hfn % 512] = hvaPage + 1;
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
      this.breakHuge(p);
      const leaf = this.table.get(Math.floor(p / 512));
      if (!leaf || leaf[p % 512] === 0) continue;
      this.setOwner(leaf[p % 512] - 1, -1);
      this.memory.put(leaf[p % 512] - 1);
      leaf[p % 512] = 0;
    }
    this.epoch++;
  }

  /** Moves a page to a new host frame with the same contents (migration, compaction). */
  migrate(hvaPage: number): number {
    const old = this.peek(hvaPage);
    if (old < 0) return this.frameOf(hvaPage);
    this.notify(hvaPage, 1);
    this.breakHuge(hvaPage);
    const next = this.memory.alloc();
    const src = this.memory.frame(old);
    const dst = this.memory.frame(next);
    dst.words.set(src.words.subarray(src.base, src.base + 1024), dst.base);
    this.table.get(Math.floor(hvaPage / 512))![hvaPage % 512] = next + 1;
    this.setOwner(old, -1);
    this.setOwner(next, hvaPage);
    this.memory.put(old);
    this.epoch++;
    return next;
  }

  /** Releases every populated page (VM teardown). */
  releaseAll(): void {
    for (const leaf of this.table.values())
      for (let i = 0; i < 512; i++) if (leaf[i] !== 0) this.memory.put(leaf[i] - 1);
    this.table.clear();
    this.owners.length = 0;
    this.hugeOrders.clear();
    this.lastKey = -1;
    this.lastLeaf = undefined;
    this.epoch++;
  }

  private notify(firstPage: number, count: number): void {
    for (const l of this.listeners) l(firstPage, count);
  }
}
