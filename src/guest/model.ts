/**
 * The guest's own record of what every process should see, independent of the page
 * tables and of the MMU underneath: per process and virtual page, the 32-bit words the
 * process stored (absent words read as zero, as anonymous memory does). Records are shared
 * copy-on-write across fork exactly like the pages they describe, but by the model's own
 * rule, so a kernel or MMU bug that maps the wrong frame shows up as a mismatch.
 */

/** Distinct words a record keeps as a list before it switches to a whole page. */
const SPARSE_MAX = 16;

/**
 * The words of one virtual page as the process stored them, shared between processes until
 * one writes. Sparse while few words were written (word indices and values in two short
 * lists: most pages of most workloads see a handful of stores, and a list costs far less to
 * make than a page); dense past SPARSE_MAX words (all 1024, one array read per load).
 */
export class PageRecord {
  refs = 1;
  /** Sparse form: word indices and their values (null once dense). */
  private keys: number[] | null;
  private vals: number[] | null;
  /** Dense form (null while sparse). */
  private words: Uint32Array | null;

  constructor(from?: PageRecord) {
    if (from === undefined) {
      this.keys = [];
      this.vals = [];
      this.words = null;
    } else {
      this.keys = from.keys?.slice() ?? null;
      this.vals = from.vals?.slice() ?? null;
      this.words = from.words?.slice() ?? null;
    }
  }

  get(word: number): number {
    const words = this.words;
    if (words !== null) return words[word];
    const keys = this.keys!;
    for (let i = 0; i < keys.length; i++) if (keys[i] === word) return this.vals![i];
    return 0;
  }

  set(word: number, value: number): void {
    const words = this.words;
    if (words !== null) {
      words[word] = value;
      return;
    }
    const keys = this.keys!;
    const vals = this.vals!;
    for (let i = 0; i < keys.length; i++)
      if (keys[i] === word) {
        vals[i] = value;
        return;
      }
    if (keys.length < SPARSE_MAX) {
      keys.push(word);
      vals.push(value);
      return;
    }
    const dense = new Uint32Array(1024);
    for (let i = 0; i < keys.length; i++) dense[keys[i]] = vals[i];
    dense[word] = value;
    this.words = dense;
    this.keys = null;
    this.vals = null;
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

/** Direct-mapped cache of records in front of `ValueModel.pages` (entries; a power of two). */
const CACHE = 64;

/** Per-process value model: virtual page number → record. */
export class ValueModel {
  readonly pages = new Map<number, PageRecord>();
  /** `cacheVpn[vpn % CACHE]` is -1 or a vpn whose current record is in `cacheRec`. */
  private readonly cacheVpn = new Float64Array(CACHE).fill(-1);
  private readonly cacheRec: (PageRecord | null)[] = new Array<PageRecord | null>(CACHE).fill(null);

  /** The value a load of word `word` of page `vpn` must return. */
  expected(vpn: number, word: number): number {
    const r = this.record(vpn);
    return r === undefined ? 0 : r.get(word);
  }

  /** Records a store, breaking the record's sharing first. */
  store(vpn: number, word: number, value: number): void {
    let r = this.record(vpn);
    if (r === undefined) {
      if (value === 0) return;
      r = this.set(vpn, new PageRecord());
    } else if (r.refs > 1) {
      r.refs--;
      r = this.set(vpn, new PageRecord(r));
    }
    r.set(word, value);
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

  private record(vpn: number): PageRecord | undefined {
    const i = vpn & (CACHE - 1);
    if (this.cacheVpn[i] === vpn) return this.cacheRec[i]!;
    const r = this.pages.get(vpn);
    if (r !== undefined) {
      this.cacheVpn[i] = vpn;
      this.cacheRec[i] = r;
    }
    return r;
  }

  private set(vpn: number, r: PageRecord): PageRecord {
    this.pages.set(vpn, r);
    const i = vpn & (CACHE - 1);
    this.cacheVpn[i] = vpn;
    this.cacheRec[i] = r;
    return r;
  }

  private release(vpn: number): void {
    const r = this.pages.get(vpn);
    if (r === undefined) return;
    r.refs--;
    this.pages.delete(vpn);
    const i = vpn & (CACHE - 1);
    if (this.cacheVpn[i] === vpn) {
      this.cacheVpn[i] = -1;
      this.cacheRec[i] = null;
    }
  }
}

/**
 * A running 32-bit hash over 32-bit words (MurmurHash3's block step and finaliser: three
 * multiplies a word, every input bit reaching every output bit).
 */
export class Digest {
  private h = 0x811c9dc5;
  /** Words mixed in. */
  count = 0;

  mix(word: number): void {
    let k = Math.imul(word, 0xcc9e2d51);
    k = Math.imul((k << 15) | (k >>> 17), 0x1b873593);
    const h = this.h ^ k;
    this.h = (Math.imul((h << 13) | (h >>> 19), 5) + 0xe6546b64) | 0;
    this.count++;
  }

  /** Mixes a non-negative safe integer (e.g. a virtual page number) as two words. */
  mixNumber(n: number): void {
    this.mix(n | 0);
    this.mix((n / 4294967296) | 0);
  }

  /** The hash of everything mixed so far (finalised; mixing may go on). */
  get value(): number {
    let h = this.h ^ this.count;
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return (h ^ (h >>> 16)) >>> 0;
  }
}
