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
 *  + a slot in byGfn's list and the byHfn map (~24-40 bytes): well under 256 bytes a page.
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
  /** gfn → ids of the pages shadowing it (any role). */
  readonly byGfn = new Map<number, number[]>();
  /** host table frame → id. */
  readonly byHfn = new Map<number, number>();
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
    let list = this.byGfn.get(gfn);
    if (!list) {
      list = [];
      this.byGfn.set(gfn, list);
    }
    list.push(id);
    this.byHfn.set(hfn, id);
    this.count++;
    return id;
  }

  release(id: number): void {
    const gfn = this.gfn[id];
    const list = this.byGfn.get(gfn)!;
    list.splice(list.indexOf(id), 1);
    if (list.length === 0) this.byGfn.delete(gfn);
    this.byHfn.delete(this.hfn[id]);
    this.moreParents.delete(id);
    this.flags[id] = 0;
    this.freeIds.push(id);
    this.count--;
  }

  /** The live page for (gfn, role), or -1. */
  find(gfn: number, role: number): number {
    const list = this.byGfn.get(gfn);
    if (list) for (const id of list) if (this.role[id] === role) return id;
    return -1;
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
  static readonly BYTES_PER_PAGE = 8 + 4 + 8 + 8 + 1 + 2 + 1 + 8;

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
  }
}
