/**
 * The reverse map: for each guest frame, the host addresses of the shadow leaf entries that
 * map it (KVM's rmap), used to write-protect a frame that became a guest page table, and to
 * zap every mapping of a frame when its memslot or host page changes.
 *
 * ```
 *  heads: Map gfn → first node        nodes: entry[n] (SPTE host address), next[n] (-1 ends)
 * ```
 * Nodes live in typed arrays with a free list: a mapping costs 12 bytes, a mapped guest
 * frame one Map entry. Lists are short (one entry per address space mapping the frame).
 */
export class ReverseMap {
  private readonly heads = new Map<number, number>();
  private entry = new Float64Array(1024);
  private next = new Int32Array(1024);
  private freeHead = -1;
  private used = 0;
  /** Mappings recorded. */
  total = 0;

  /** Distinct guest frames mapped. */
  get size(): number {
    return this.heads.size;
  }

  add(gfn: number, entryAddr: number): void {
    let n = this.freeHead;
    if (n >= 0) this.freeHead = this.next[n];
    else {
      if (this.used === this.entry.length) this.grow();
      n = this.used++;
    }
    this.entry[n] = entryAddr;
    this.next[n] = this.heads.get(gfn) ?? -1;
    this.heads.set(gfn, n);
    this.total++;
  }

  /** Removes one mapping; false if it was not recorded under `gfn`. */
  remove(gfn: number, entryAddr: number): boolean {
    let prev = -1;
    for (let n = this.heads.get(gfn) ?? -1; n >= 0; prev = n, n = this.next[n]) {
      if (this.entry[n] !== entryAddr) continue;
      if (prev < 0) {
        if (this.next[n] < 0) this.heads.delete(gfn);
        else this.heads.set(gfn, this.next[n]);
      } else this.next[prev] = this.next[n];
      this.next[n] = this.freeHead;
      this.freeHead = n;
      this.total--;
      return true;
    }
    return false;
  }

  has(gfn: number, entryAddr: number): boolean {
    for (let n = this.heads.get(gfn) ?? -1; n >= 0; n = this.next[n])
      if (this.entry[n] === entryAddr) return true;
    return false;
  }

  /** The entries mapping `gfn` (a copy: safe to change the map while using it). */
  entriesOf(gfn: number): number[] {
    const out: number[] = [];
    for (let n = this.heads.get(gfn) ?? -1; n >= 0; n = this.next[n]) out.push(this.entry[n]);
    return out;
  }

  /** Forgets every mapping. */
  clear(): void {
    this.heads.clear();
    this.freeHead = -1;
    this.used = 0;
    this.total = 0;
  }

  /** The mapped guest frames (a copy). */
  gfns(): number[] {
    return [...this.heads.keys()];
  }

  private grow(): void {
    const e = new Float64Array(this.entry.length * 2);
    e.set(this.entry);
    this.entry = e;
    const n = new Int32Array(this.next.length * 2);
    n.set(this.next);
    this.next = n;
  }
}
