/**
 * DumpMemory: a memory dump's guest-physical memory as a read-only `FrameSource`.
 *
 * ```
 *  pieces (sorted by guest-physical start, disjoint):
 *    [start ........ fileEnd ........ end)
 *     bytes from the file | zeros (p_memsz > p_filesz)
 *  frame gfn → the piece holding all of [gfn·4096, +4096) from the file, 4-byte aligned:
 *              its words, no copy (the common case)
 *            → otherwise (a page straddling pieces, a segment starting or ending mid-page,
 *              a zero tail, a misaligned file offset): a 4 KiB copy, kept in a small cache
 *            → null when no piece touches the page
 * ```
 * A piece's file bytes may be given, or loaded on first touch (a plain dump file is read
 * in chunks as pages are used, so a walk through a large dump reads a few megabytes).
 * A dump is never written: compare-exchange reports CMPXCHG_READONLY, so a walker
 * leaves accessed/dirty flags alone.
 */

import { CMPXCHG_NOT_RAM, CMPXCHG_READONLY, type FrameSource } from "../mem/frame-source.js";

/**
 * Guest-physical [start, end): the first `bytes.length` (or `load.length`) bytes from the
 * file, the rest zeros. With `load`, the bytes are read by `load.read()` on first use.
 */
export interface MemoryPiece {
  readonly start: number;
  readonly end: number;
  readonly bytes?: Uint8Array;
  readonly load?: { readonly length: number; read(): Uint8Array };
}

interface Piece {
  start: number;
  fileEnd: number;
  end: number;
  /** The file bytes, or null until loaded. */
  bytes: Uint8Array | null;
  load: (() => Uint8Array) | null;
  /** Word view over `bytes.buffer`, from `wordsStart` (bytes.byteOffset rounded down to 4). */
  words: Uint32Array | null;
  wordsStart: number;
}

const PAGE = 4096;
/** Copied pages kept (16 MiB). */
const COPY_CACHE_PAGES = 4096;

export class DumpMemory implements FrameSource {
  frameBase = 0;
  private readonly pieces: Piece[];
  private readonly copies = new Map<number, Uint32Array>();
  private last = 0;
  /** Pages served by copying rather than in place (for tests and statistics). */
  copiedPages = 0;

  /** @param pieces disjoint ranges of guest-physical memory (any order). */
  constructor(pieces: readonly MemoryPiece[]) {
    this.pieces = pieces
      .filter((p) => p.end > p.start)
      .map((p) => {
        const length = p.bytes?.length ?? p.load?.length ?? 0;
        if (!(p.start >= 0 && p.end <= 2 ** 52 && length <= p.end - p.start))
          throw new RangeError(`memory piece ${p.start}..${p.end} with ${length} bytes is malformed`);
        return {
          start: p.start,
          fileEnd: p.start + length,
          end: p.end,
          bytes: p.bytes ? plain(p.bytes) : p.load ? null : new Uint8Array(0),
          load: p.bytes ? null : (p.load?.read.bind(p.load) ?? null),
          words: null,
          wordsStart: 0,
        };
      })
      .sort((a, b) => a.start - b.start);
    for (let i = 1; i < this.pieces.length; i++)
      if (this.pieces[i].start < this.pieces[i - 1].end)
        throw new RangeError(`memory pieces overlap at 0x${this.pieces[i].start.toString(16)}`);
  }

  /** The guest-physical ranges present, merged where adjacent: [start, end) pairs. */
  get ranges(): readonly (readonly [number, number])[] {
    const out: [number, number][] = [];
    for (const p of this.pieces) {
      const prev = out[out.length - 1];
      if (prev && prev[1] === p.start) prev[1] = p.end;
      else out.push([p.start, p.end]);
    }
    return out;
  }

  /** Bytes of file data held in memory (loaded so far, or given). */
  get loadedBytes(): number {
    let n = 0;
    for (const p of this.pieces) if (p.bytes) n += p.bytes.length;
    return n;
  }

  /** Total bytes of guest memory in the dump. */
  get size(): number {
    let n = 0;
    for (const p of this.pieces) n += p.end - p.start;
    return n;
  }

  frameWords(gfn: number): Uint32Array | null {
    const pa = gfn * PAGE;
    const i = this.find(pa);
    if (i >= 0) {
      const p = this.pieces[i];
      if (pa + PAGE <= p.fileEnd) {
        const at = bytesOf(p).byteOffset + (pa - p.start);
        if (at % 4 === 0) {
          const words = p.words ?? this.wordView(p);
          this.frameBase = (at - p.wordsStart) / 4;
          return words;
        }
      }
    }
    return this.copy(gfn);
  }

  compareExchange(pa: number): number {
    return this.find(pa) >= 0 ? CMPXCHG_READONLY : CMPXCHG_NOT_RAM;
  }

  /** True when the byte at guest-physical `pa` is in the dump. */
  contains(pa: number): boolean {
    return this.find(pa) >= 0;
  }

  /**
   * Reads `length` bytes at guest-physical `gpa`; null when any byte is not in the dump.
   * The result may share memory with the dump: copy it before modifying it.
   */
  read(gpa: number, length: number): Uint8Array | null {
    if (!Number.isSafeInteger(gpa) || gpa < 0 || !Number.isSafeInteger(length) || length < 0)
      throw new RangeError(`read of ${length} bytes at ${gpa}: not a guest-physical range`);
    if (length === 0) return new Uint8Array(0);
    const i = this.find(gpa);
    if (i < 0) return null;
    const first = this.pieces[i];
    if (gpa + length <= first.fileEnd)
      return bytesOf(first).subarray(gpa - first.start, gpa - first.start + length);
    const out = new Uint8Array(length);
    let done = 0;
    for (let k = i; done < length; k++) {
      const p = this.pieces[k];
      const a = gpa + done;
      if (p === undefined || p.start > a) return null;
      const n = Math.min(p.end, gpa + length) - a;
      if (a < p.fileEnd) {
        const m = Math.min(n, p.fileEnd - a);
        out.set(bytesOf(p).subarray(a - p.start, a - p.start + m), done);
      }
      done += n;
    }
    return out;
  }

  /** Index of the piece containing `pa`, or -1. */
  private find(pa: number): number {
    const ps = this.pieces;
    const l = ps[this.last];
    if (l !== undefined && pa >= l.start && pa < l.end) return this.last;
    let lo = 0;
    let hi = ps.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const p = ps[mid];
      if (pa < p.start) hi = mid - 1;
      else if (pa >= p.end) lo = mid + 1;
      else {
        this.last = mid;
        return mid;
      }
    }
    return -1;
  }

  private wordView(p: Piece): Uint32Array {
    const b = bytesOf(p);
    const start = b.byteOffset - (b.byteOffset % 4);
    const count = Math.floor((b.byteOffset + b.length - start) / 4);
    p.wordsStart = start;
    p.words = new Uint32Array(b.buffer, start, count);
    return p.words;
  }

  /** Assembles a page touched by pieces but not servable in place. */
  private copy(gfn: number): Uint32Array | null {
    const cached = this.copies.get(gfn);
    if (cached !== undefined) {
      this.frameBase = 0;
      return cached;
    }
    const pa = gfn * PAGE;
    const ps = this.pieces;
    // First piece ending after the page start.
    let lo = 0;
    let hi = ps.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ps[mid].end <= pa) lo = mid + 1;
      else hi = mid;
    }
    if (lo >= ps.length || ps[lo].start >= pa + PAGE) return null;
    const words = new Uint32Array(PAGE / 4);
    const bytes = new Uint8Array(words.buffer);
    for (let k = lo; k < ps.length && ps[k].start < pa + PAGE; k++) {
      const p = ps[k];
      const from = Math.max(pa, p.start);
      const to = Math.min(pa + PAGE, p.fileEnd);
      if (to > from) bytes.set(bytesOf(p).subarray(from - p.start, to - p.start), from - pa);
    }
    if (this.copies.size >= COPY_CACHE_PAGES) this.copies.delete(this.copies.keys().next().value as number);
    this.copies.set(gfn, words);
    this.copiedPages++;
    this.frameBase = 0;
    return words;
  }
}

/** A piece's file bytes, loading them on first use. */
function bytesOf(p: Piece): Uint8Array {
  if (p.bytes === null) {
    const b = p.load!();
    if (b.length !== p.fileEnd - p.start)
      throw new RangeError(
        `memory piece at 0x${p.start.toString(16)}: loaded ${b.length} bytes, expected ${p.fileEnd - p.start}`,
      );
    p.bytes = plain(b);
    p.load = null;
  }
  return p.bytes;
}

/** A plain Uint8Array view (not a Buffer), so what read() returns is an ordinary Uint8Array. */
function plain(b: Uint8Array): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}
