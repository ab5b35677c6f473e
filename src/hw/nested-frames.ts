/**
 * Guest-physical memory as a 2-D walk sees it: every guest frame the guest walker asks
 * for is first translated through the host's EPT or NPT tables. Giving the ordinary
 * `GuestWalker` this `FrameSource` turns it into the guest half of a two-dimensional
 * walk (nesting by composition: no second walker).
 *
 * Guest paging-structure accesses are checked as the hardware checks them: EPT with A/D
 * enabled treats them as writes (SDM 29.3.5), NPT treats them as user writes (APM 15.25.5;
 * QEMU and KVM do the same); guest A/D updates are writes. When a translation fails, the
 * failing EPT/NPT walk is kept in `nested` for the VM exit, and the guest walk sees "not
 * RAM" and stops.
 */

import {
  ACCESS_GUEST_TABLE,
  ACCESS_LINEAR_VALID,
  ACCESS_USER,
  ACCESS_WRITE,
  EPT_EFF_W,
  X86_EFF_W,
} from "../arch/access.js";
import { FORMAT_EPT } from "../arch/format.js";
import {
  CMPXCHG_NOT_RAM,
  EMPTY_FRAME_CACHE,
  type FrameCache,
  type FrameSource,
} from "../mem/frame-source.js";
import type { HostMemory } from "../mem/host-memory.js";
import { Walk } from "../walk/walk.js";
import type { GuestWalker } from "../walk/walker.js";

/** `frameWords` calls one walk records for `rewind` (5 levels, with room for A/D retries). */
const MAX_CALLS = 16;

export class NestedFrameSource implements FrameSource {
  frameBase = 0;
  /** The last EPT/NPT walk; after a failure, the one that failed. */
  readonly nested = new Walk();
  /** Set when a translation failed since `reset()`. */
  failed = false;
  /** EPT/NPT entries read since `reset()` (memory references of the host dimension). */
  refs = 0;
  /** Access descriptor for reading a guest paging-structure entry. */
  readonly tableRead: number;
  /** Access descriptor for a guest A/D update (a write to a paging-structure entry). */
  readonly tableWrite: number;
  // The translations made during the current walk (gfn → host frame, writable), so that the
  // guest's A/D update reuses them as the hardware does instead of walking again.
  private readonly seenGfn = new Float64Array(8);
  private readonly seenHfn = new Float64Array(8);
  private readonly seenWritable = new Uint8Array(8);
  private seen = 0;
  // Every `frameWords` call since `reset()` and its result (null words: not RAM), and the
  // replay cursor `rewind()` sets back to the start: see FrameSource.rewind.
  private readonly callGfn = new Float64Array(MAX_CALLS);
  private readonly callWords: (Uint32Array | null)[] = new Array<Uint32Array | null>(MAX_CALLS).fill(null);
  private readonly callBase = new Int32Array(MAX_CALLS);
  private calls = 0;
  private cursor = 0;
  private readonly writableBit: number;
  /**
   * Optional nested TLB: guest frame → host frame for guest paging-structure references,
   * kept across walks (direct-mapped; NaN = empty). Off (size 0) by default; the vCPU
   * flushes it whenever the host tables change under it (INVEPT / an MMU zap).
   */
  private ntlbGfn = new Float64Array(0);
  private ntlbHfn = new Float64Array(0);
  private ntlbWritable = new Uint8Array(0);
  ntlbHits = 0;
  ntlbMisses = 0;

  constructor(
    readonly hostWalker: GuestWalker,
    readonly host: HostMemory,
  ) {
    const ept = hostWalker.format.kind === FORMAT_EPT;
    const ad = hostWalker.format.accessedMask !== 0;
    this.tableRead = ept
      ? ACCESS_GUEST_TABLE | ACCESS_LINEAR_VALID | (ad ? ACCESS_WRITE : 0)
      : ACCESS_GUEST_TABLE | ACCESS_USER | ACCESS_WRITE;
    this.tableWrite = this.tableRead | ACCESS_WRITE;
    this.writableBit = ept ? EPT_EFF_W : X86_EFF_W;
  }

  /** Enables a nested TLB of `entries` (a power of two), or disables it with 0. */
  setNestedTlb(entries: number): void {
    if (!Number.isInteger(entries) || entries < 0 || (entries & (entries - 1)) !== 0)
      throw new RangeError(`nested TLB size ${entries} is not 0 or a power of two`);
    this.ntlbGfn = new Float64Array(entries).fill(Number.NaN);
    this.ntlbHfn = new Float64Array(entries);
    this.ntlbWritable = new Uint8Array(entries);
  }

  flushNestedTlb(): void {
    this.ntlbGfn.fill(Number.NaN);
  }

  reset(): void {
    this.failed = false;
    this.refs = 0;
    this.seen = 0;
    this.calls = 0;
    this.cursor = 0;
  }

  /**
   * An empty cache (every probe misses), so that the guest walker takes its fast path over
   * this source; `rewind` keeps its hand-over to the general path uncounted.
   */
  currentFrameCache(): FrameCache {
    return EMPTY_FRAME_CACHE;
  }

  /** See FrameSource.rewind: replays the reads since `reset()`, so call `reset()` before each walk. */
  rewind(): void {
    this.cursor = 0;
  }

  frameWords(gfn: number): Uint32Array | null {
    const c = this.cursor;
    if (c < this.calls) {
      if (this.callGfn[c] === gfn) {
        this.cursor = c + 1;
        this.frameBase = this.callBase[c];
        return this.callWords[c];
      }
      this.calls = c; // a different sequence from here: forget the rest
    }
    const words = this.translate(gfn);
    if (c < MAX_CALLS) {
      this.callGfn[c] = gfn;
      this.callWords[c] = words;
      this.callBase[c] = this.frameBase;
      this.calls = this.cursor = c + 1;
    }
    return words;
  }

  /** `frameWords` with its effects: the host walk (or nested TLB hit) and the reference count. */
  private translate(gfn: number): Uint32Array | null {
    const n = this.ntlbGfn.length;
    if (n !== 0) {
      const i = gfn % n;
      if (this.ntlbGfn[i] === gfn) {
        this.ntlbHits++;
        const hfn = this.ntlbHfn[i];
        this.remember(gfn, hfn, this.ntlbWritable[i]);
        const words = this.host.frameWords(hfn);
        this.frameBase = this.host.frameBase;
        return words;
      }
      this.ntlbMisses++;
    }
    const gpa = gfn * 4096;
    const w = this.nested;
    // Only where the frame is matters on success (a failure is a full walk: the exit's record).
    const ok = this.hostWalker.walkAddress(Math.floor(gpa / 0x100000000), gpa >>> 0, this.tableRead, w);
    this.refs += w.depth;
    if (!ok) {
      this.failed = true;
      return null;
    }
    const hfn = Math.floor(w.address / 4096);
    const writable = w.effective & this.writableBit;
    this.remember(gfn, hfn, writable);
    if (n !== 0) {
      const i = gfn % n;
      this.ntlbGfn[i] = gfn;
      this.ntlbHfn[i] = hfn;
      this.ntlbWritable[i] = writable;
    }
    const words = this.host.frameWords(hfn);
    this.frameBase = this.host.frameBase;
    return words;
  }

  private remember(gfn: number, hfn: number, writable: number): void {
    if (this.seen < 8) {
      this.seenGfn[this.seen] = gfn;
      this.seenHfn[this.seen] = hfn;
      this.seenWritable[this.seen++] = writable;
    }
  }

  compareExchange(
    pa: number,
    bytes: 4 | 8,
    expLo: number,
    expHi: number,
    newLo: number,
    newHi: number,
  ): number {
    const gfn = Math.floor(pa / 4096);
    for (let i = 0; i < this.seen; i++)
      if (this.seenGfn[i] === gfn && this.seenWritable[i] !== 0)
        return this.host.compareExchange(
          this.seenHfn[i] * 4096 + (pa % 4096),
          bytes,
          expLo,
          expHi,
          newLo,
          newHi,
        );
    // Not writable (or not seen): walk as a write, which faults or (after a host change) succeeds.
    const w = this.nested;
    const ok = this.hostWalker.walk(Math.floor(pa / 0x100000000), pa >>> 0, this.tableWrite, w);
    this.refs += w.depth;
    if (!ok) {
      this.failed = true;
      return CMPXCHG_NOT_RAM;
    }
    return this.host.compareExchange(w.address, bytes, expLo, expHi, newLo, newHi);
  }
}
