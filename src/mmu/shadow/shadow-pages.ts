/**
 * The shadow MMU's bookkeeping: one record per shadow page, kept in typed arrays indexed
 * by a small page id (no object per page), plus the hash from guest frame to pages and
 * from host table frame back to its page.
 *
 * ```
 *  id → gfn[id]      guest frame shadowed (or first frame of a direct range)   8 bytes
 *       role[id]     packed role (role.ts)                                     4
 *       hfn[id]      host frame of the shadow table                            8
 *       parent[id]   host address of the one SPTE linking it (-1: none)        8
 *       flags[id]    alive, unsync, root                                       1
 *       rootRefs[id] vCPUs using it as their root                              2
 *       flood[id]    emulated writes since last used (write-flood detection)   1
 *       lastUse[id]  LRU clock                                                 8
 *       sameGfn[id]  next page shadowing the same gfn (-1 ends the chain)           4
 *  + one Map entry per distinct gfn (the chain head), and a slot in the host-frame → id
 *  table (typed chunks of 512 frames): well under 256 bytes a page.
 * ```
 * A page linked from more than one parent entry (a guest table reachable by two paths with
 * the same role) keeps the extra parents in `moreParents`.
 */

export const SP_ALIVE = 1;
export const SP_UNSYNC = 2;
export const SP_ROOT = 4;

export class ShadowPages {
  gfn = new Float64Array(64);
  role = new Int32Array(64);
  hfn = new Float64Array(64);
  parent = new Float64Array(64);
  flags = new Uint8Array(64);
  rootRefs = new Uint16Array(64);
  flood = new Uint8Array(64);
  lastUse = new Float64Array(64);
  /** Extra parent SPTE addresses for pages linked more than once. */
  readonly moreParents = new Map<number, number[]>();
  sameGfn = new Int32Array(64);
  /** gfn → first id of the chain of pages shadowing it (any role). */
  private readonly gfnHead = new Map<number, number>();
  /** host table frame → id + 1, in chunks of 512 frames. */
  private readonly frameIds: (Int32Array | undefined)[] = [];
  /** Live pages. */
  count = 0;
  private clock = 0;
  private freeIds: number[] = [];
  private next = 0;

  allocate(gfn: number, role: number, hfn: number): number {
    const id = this.freeIds.length > 0 ? this.freeIds.pop()! : this.next++;
    if (id >= this.gfn.length) this.grow();
    this.gfn[id] = gfn;
    this.role[id] = role;
    this.hfn[id] = hfn;
    this.parent[id] = -1;
    this.flags[id] = SP_ALIVE;
    this.rootRefs[id] = 0;
    this.flood[id] = 0;
    this.lastUse[id] = ++this.clock;
    this.sameGfn[id] = this.gfnHead.get(gfn) ?? -1;
    this.gfnHead.set(gfn, id);
    this.setFrameId(hfn, id);
    this.count++;
    return id;
  }

  release(id: number): void {
    const gfn = this.gfn[id];
    let prev = -1;
    for (let x = this.gfnHead.get(gfn) ?? -1; x >= 0; prev = x, x = this.sameGfn[x]) {
      if (x !== id) continue;
      if (prev >= 0) this.sameGfn[prev] = this.sameGfn[x];
      else if (this.sameGfn[x] >= 0) this.gfnHead.set(gfn, this.sameGfn[x]);
      else this.gfnHead.delete(gfn);
      break;
    }
    this.setFrameId(this.hfn[id], -1);
    this.moreParents.delete(id);
    this.flags[id] = 0;
    this.freeIds.push(id);
    this.count--;
  }

  /** The live page for (gfn, role), or -1. */
  find(gfn: number, role: number): number {
    for (let id = this.first(gfn); id >= 0; id = this.sameGfn[id]) if (this.role[id] === role) return id;
    return -1;
  }

  /** First page shadowing `gfn` (then follow `sameGfn`), or -1. Allocation-free. */
  first(gfn: number): number {
    return this.gfnHead.get(gfn) ?? -1;
  }

  /** Every page shadowing `gfn` (a copy: safe while pages are zapped). */
  idsOf(gfn: number): number[] {
    const out: number[] = [];
    for (let id = this.first(gfn); id >= 0; id = this.sameGfn[id]) out.push(id);
    return out;
  }

  /** The page whose table is host frame `hfn`, or -1. */
  idOfFrame(hfn: number): number {
    const chunk = this.frameIds[Math.floor(hfn / 512)];
    return chunk === undefined ? -1 : chunk[hfn % 512] - 1;
  }

  private setFrameId(hfn: number, id: number): void {
    const c = Math.floor(hfn / 512);
    let chunk = this.frameIds[c];
    if (chunk === undefined) {
      chunk = new Int32Array(512);
      this.frameIds[c] = chunk;
    }
    chunk[hfn % 512] = id + 1;
  }

  touch(id: number): void {
    this.lastUse[id] = ++this.clock;
    this.flood[id] = 0;
  }

  addParent(id: number, spteAddr: number): void {
    if (this.parent[id] === -1) this.parent[id] = spteAddr;
    else if (this.parent[id] !== spteAddr) {
      const more = this.moreParents.get(id) ?? [];
      if (!more.includes(spteAddr)) more.push(spteAddr);
      this.moreParents.set(id, more);
    }
  }

  removeParent(id: number, spteAddr: number): void {
    const more = this.moreParents.get(id);
    if (this.parent[id] === spteAddr) this.parent[id] = more?.length ? more.shift()! : -1;
    else if (more) more.splice(more.indexOf(spteAddr), 1);
    if (more && more.length === 0) this.moreParents.delete(id);
  }

  parents(id: number): number[] {
    if (this.parent[id] === -1) return [];
    return [this.parent[id], ...(this.moreParents.get(id) ?? [])];
  }

  /** Ids of every live page. */
  *ids(): Generator<number> {
    for (let id = 0; id < this.next; id++) if (this.flags[id] & SP_ALIVE) yield id;
  }

  /** Bytes of bookkeeping per page in the typed arrays (the 4 KiB table not included). */
  static readonly BYTES_PER_PAGE = 8 + 4 + 8 + 8 + 1 + 2 + 1 + 8 + 4;

  private grow(): void {
    const n = this.gfn.length * 2;
    const g = <T extends Float64Array | Int32Array | Uint8Array | Uint16Array>(
      a: T,
      make: (n: number) => T,
    ): T => {
      const b = make(n);
      b.set(a);
      return b;
    };
    this.gfn = g(this.gfn, (k) => new Float64Array(k));
    this.role = g(this.role, (k) => new Int32Array(k));
    this.hfn = g(this.hfn, (k) => new Float64Array(k));
    this.parent = g(this.parent, (k) => new Float64Array(k));
    this.flags = g(this.flags, (k) => new Uint8Array(k));
    this.rootRefs = g(this.rootRefs, (k) => new Uint16Array(k));
    this.flood = g(this.flood, (k) => new Uint8Array(k));
    this.lastUse = g(this.lastUse, (k) => new Float64Array(k));
    this.sameGfn = g(this.sameGfn, (k) => new Int32Array(k));
  }
}
