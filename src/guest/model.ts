/**
 * The guest's own record of what every process should see, independent of the page
 * tables and of the MMU underneath: per process and virtual page, the 32-bit words the
 * process stored (absent words read as zero, as anonymous memory does). Records are shared
 * copy-on-write across fork exactly like the pages they describe, but by the model's own
 * rule, so a kernel or MMU bug that maps the wrong frame shows up as a mismatch.
 */

/** The words written into one virtual page, shared between processes until one writes. */
export class PageRecord {
  refs = 1;
  readonly words: Map<number, number>;

  constructor(words?: Map<number, number>) {
    this.words = words ? new Map(words) : new Map();
  }
}

/** A load returned something other than what the process stored: the wrong frame is mapped. */
export class GuestIntegrityError extends Error {
  override name = "GuestIntegrityError";

  constructor(
    readonly pid: number,
    readonly va: bigint,
    readonly expected: number | string,
    readonly got: number | string,
    detail = "",
  ) {
    super(
      `guest integrity: process ${pid} at 0x${va.toString(16)} expected ${show(expected)}, got ${show(got)}` +
        (detail ? ` (${detail})` : ""),
    );
  }
}

function show(v: number | string): string {
  return typeof v === "number" ? `0x${(v >>> 0).toString(16)}` : v;
}

/** Per-process value model: virtual page number → record. */
export class ValueModel {
  readonly pages = new Map<number, PageRecord>();

  /** The value a load of word `word` of page `vpn` must return. */
  expected(vpn: number, word: number): number {
    return this.pages.get(vpn)?.words.get(word) ?? 0;
  }

  /** Records a store, breaking the record's sharing first. */
  store(vpn: number, word: number, value: number): void {
    let r = this.pages.get(vpn);
    if (r === undefined) {
      r = new PageRecord();
      this.pages.set(vpn, r);
    } else if (r.refs > 1) {
      r.refs--;
      r = new PageRecord(r.words);
      this.pages.set(vpn, r);
    }
    if (value === 0) r.words.delete(word);
    else r.words.set(word, value >>> 0);
  }

  /** Forgets pages [first, end) (munmap, exec, exit): they read as zero when mapped again. */
  drop(first: number, end: number): void {
    if (end - first < this.pages.size) {
      for (let v = first; v < end; v++) this.release(v);
      return;
    }
    for (const v of [...this.pages.keys()]) if (v >= first && v < end) this.release(v);
  }

  /** The model of a forked child: every record shared. */
  fork(): ValueModel {
    const child = new ValueModel();
    for (const [v, r] of this.pages) {
      r.refs++;
      child.pages.set(v, r);
    }
    return child;
  }

  private release(vpn: number): void {
    const r = this.pages.get(vpn);
    if (r === undefined) return;
    r.refs--;
    this.pages.delete(vpn);
  }
}

/** A running 32-bit FNV-1a hash over 32-bit words. */
export class Digest {
  private h = 0x811c9dc5;
  /** Words mixed in. */
  count = 0;

  mix(word: number): void {
    let h = this.h;
    for (let i = 0; i < 4; i++) {
      h ^= (word >>> (i * 8)) & 0xff;
      h = Math.imul(h, 0x01000193);
    }
    this.h = h >>> 0;
    this.count++;
  }

  /** Mixes a non-negative safe integer (e.g. a virtual page number) as two words. */
  mixNumber(n: number): void {
    this.mix(n % 2 ** 32);
    this.mix(Math.floor(n / 2 ** 32));
  }

  get value(): number {
    return this.h;
  }
}
