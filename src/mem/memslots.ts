/**
 * Memslots: how guest-physical memory is backed. Each slot maps a range of guest frames
 * to a range of host virtual pages, with flags. Every change bumps `generation`, which
 * host MMUs stamp into cached MMIO entries so stale ones can be recognised (KVM's
 * memslot generation).
 */

export interface MemslotFlags {
  /** Guest writes fault to the VMM (ROM, read-only mappings). */
  readonly readOnly: boolean;
  /** Guest writes are recorded in the slot's dirty bitmap. */
  readonly dirtyLog: boolean;
  /**
   * Private memory (TDX-style): reachable only through GPAs without stolen attribute bits;
   * a stolen-bit ("shared") alias of it is treated as unbacked.
   */
  readonly private: boolean;
}

export interface MemslotSpec {
  /** Slot id, unique within the VM. */
  id: number;
  /** First guest frame number. */
  baseGfn: number;
  /** Size in 4 KiB pages. */
  pages: number;
  /** First host virtual page number (HVA >> 12) backing `baseGfn`. */
  hvaPage: number;
  flags?: Partial<MemslotFlags>;
}

export interface Memslot {
  readonly id: number;
  readonly baseGfn: number;
  readonly pages: number;
  readonly hvaPage: number;
  readonly flags: MemslotFlags;
  /** One bit per page while dirty logging is on, else null. */
  readonly dirtyBitmap: Uint32Array | null;
}

/** Records a write to `gfn` in the slot's dirty bitmap, if it logs. */
export function markDirty(slot: Memslot, gfn: number): void {
  const bm = slot.dirtyBitmap;
  if (bm !== null) {
    const p = gfn - slot.baseGfn;
    bm[p >>> 5] |= 1 << (p & 31);
  }
}

/** Whether `gfn` is marked in the slot's dirty bitmap (false when the slot does not log). */
export function isDirty(slot: Memslot, gfn: number): boolean {
  const bm = slot.dirtyBitmap;
  if (bm === null) return false;
  const p = gfn - slot.baseGfn;
  return ((bm[p >>> 5] >>> (p & 31)) & 1) === 1;
}

/** Thrown for memslot operations that would make the layout invalid. */
export class MemslotError extends Error {
  override name = "MemslotError";
}

export class Memslots {
  /** Bumped on every change. */
  generation = 0;
  private slots: Memslot[] = []; // sorted by baseGfn
  private last: Memslot | undefined;

  /** @param maxGfn exclusive upper bound of guest frame numbers (guest MAXPHYADDR). */
  constructor(readonly maxGfn: number = 2 ** 40) {}

  /** All slots in guest-physical order. */
  list(): readonly Memslot[] {
    return this.slots;
  }

  get(id: number): Memslot {
    const s = this.slots.find((x) => x.id === id);
    if (!s) throw new MemslotError(`no memslot with id ${id}`);
    return s;
  }

  /** The slot containing `gfn`, or undefined (an MMIO / unbacked address). */
  find(gfn: number): Memslot | undefined {
    const l = this.last;
    if (l !== undefined && gfn >= l.baseGfn && gfn < l.baseGfn + l.pages) return l;
    let lo = 0;
    let hi = this.slots.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const s = this.slots[mid];
      if (gfn < s.baseGfn) hi = mid - 1;
      else if (gfn >= s.baseGfn + s.pages) lo = mid + 1;
      else {
        this.last = s;
        return s;
      }
    }
    return undefined;
  }

  add(spec: MemslotSpec): Memslot {
    if (this.slots.some((s) => s.id === spec.id))
      throw new MemslotError(`memslot id ${spec.id} already exists`);
    const slot = this.make(spec.id, spec.baseGfn, spec.pages, spec.hvaPage, {
      readOnly: spec.flags?.readOnly ?? false,
      dirtyLog: spec.flags?.dirtyLog ?? false,
      private: spec.flags?.private ?? false,
    });
    this.checkOverlap(slot, undefined);
    this.replace(undefined, slot);
    return slot;
  }

  delete(id: number): Memslot {
    const s = this.get(id);
    this.replace(s, undefined);
    return s;
  }

  /** Moves a slot to a new guest-physical base, keeping its backing and flags. */
  move(id: number, newBaseGfn: number): Memslot {
    const s = this.get(id);
    const moved = this.make(s.id, newBaseGfn, s.pages, s.hvaPage, s.flags);
    this.checkOverlap(moved, s);
    this.replace(s, moved);
    return moved;
  }

  /** Changes a slot's flags; turning dirty logging on starts a clean bitmap. */
  setFlags(id: number, flags: Partial<MemslotFlags>): Memslot {
    const s = this.get(id);
    const next = this.make(s.id, s.baseGfn, s.pages, s.hvaPage, { ...s.flags, ...flags });
    if (next.dirtyBitmap && s.dirtyBitmap) next.dirtyBitmap.set(s.dirtyBitmap);
    this.replace(s, next);
    return next;
  }

  private make(id: number, baseGfn: number, pages: number, hvaPage: number, flags: MemslotFlags): Memslot {
    const where = `memslot ${id}`;
    if (!Number.isSafeInteger(id) || id < 0)
      throw new MemslotError(`${where}: id must be a non-negative integer`);
    if (!Number.isSafeInteger(baseGfn) || baseGfn < 0)
      throw new MemslotError(
        `${where}: base gfn ${baseGfn} must be a non-negative integer (page-aligned address)`,
      );
    if (!Number.isSafeInteger(pages) || pages <= 0)
      throw new MemslotError(`${where}: size must be a positive number of pages`);
    if (!Number.isSafeInteger(hvaPage) || hvaPage < 0)
      throw new MemslotError(`${where}: host virtual page ${hvaPage} must be a non-negative integer`);
    if (baseGfn + pages > this.maxGfn)
      throw new MemslotError(
        `${where}: gfns ${hexGfn(baseGfn)}..${hexGfn(baseGfn + pages - 1)} exceed the guest physical address width (max gfn ${hexGfn(this.maxGfn - 1)})`,
      );
    const bitmap = flags.dirtyLog ? new Uint32Array(Math.ceil(pages / 32)) : null;
    return Object.freeze({
      id,
      baseGfn,
      pages,
      hvaPage,
      flags: Object.freeze({ ...flags }),
      dirtyBitmap: bitmap,
    });
  }

  private checkOverlap(slot: Memslot, ignore: Memslot | undefined): void {
    for (const s of this.slots) {
      if (s === ignore) continue;
      if (slot.baseGfn < s.baseGfn + s.pages && s.baseGfn < slot.baseGfn + slot.pages)
        throw new MemslotError(
          `memslot ${slot.id} (gfn ${hexGfn(slot.baseGfn)}..${hexGfn(slot.baseGfn + slot.pages - 1)}) overlaps memslot ${s.id} (gfn ${hexGfn(s.baseGfn)}..${hexGfn(s.baseGfn + s.pages - 1)})`,
        );
    }
  }

  private replace(old: Memslot | undefined, next: Memslot | undefined): void {
    const slots = this.slots.filter((s) => s !== old);
    if (next) slots.push(next);
    slots.sort((a, b) => a.baseGfn - b.baseGfn);
    this.slots = slots;
    this.last = undefined;
    this.generation++;
  }
}

function hexGfn(g: number): string {
  return `0x${g.toString(16)}`;
}
