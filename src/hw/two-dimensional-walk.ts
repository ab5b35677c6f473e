/**
 * The hardware's two-dimensional walk (EPT or NPT): the guest's tables walked with the
 * guest walker, every guest-physical reference (each guest table frame, each guest A/D
 * update, and the final address) translated through the host's tables. Every memory
 * reference is counted: a 4-level guest on 4-level EPT with nothing cached makes 24
 * (4 guest entries + 4 × 4 EPT entries for the guest tables + 4 for the final address);
 * 5 on 5 makes 35.
 *
 * Outcomes:
 *  - `TWO_D_OK`: `guestPhysical` and `hostPhysical` hold the translation, `rights` the
 *    combined rights;
 *  - `TWO_D_GUEST_FAULT`: the guest's own tables refuse the access (`guest` holds the #PF
 *    or #GP to inject);
 *  - `TWO_D_HOST_FAULT`: a host-table walk failed (`host` holds the EPT violation /
 *    misconfiguration / NPT fault; `hostFaultOnTable` says whether it was for a guest
 *    paging-structure access). That is a VM exit.
 */

import { ACCESS_FETCH, ACCESS_LINEAR_VALID, ACCESS_USER, ACCESS_WRITE, X86_EFF_U } from "../arch/access.js";
import { FORMAT_EPT } from "../arch/format.js";
import { Walk } from "../walk/walk.js";
import type { GuestWalker } from "../walk/walker.js";
import type { NestedFrameSource } from "./nested-frames.js";

export const TWO_D_OK = 0;
export const TWO_D_GUEST_FAULT = 1;
export const TWO_D_HOST_FAULT = 2;

export class TwoDimensionalWalk {
  /** The guest dimension's record. */
  readonly guest = new Walk();
  /** The host dimension's record for the final address (or the failing one). */
  readonly host: Walk;
  guestPhysical = 0;
  hostPhysical = 0;
  /** log2 of the page size the combined translation may be cached with (the smaller of the two). */
  pageShift = 12;
  /** Whether the host fault was for a guest paging-structure access. */
  hostFaultOnTable = false;
  /** Memory references of the last walk (guest entries + host entries). */
  refs = 0;

  /** Counters. */
  walks = 0;
  totalRefs = 0;
  completed = 0;
  completedRefs = 0;

  constructor(
    /** Walker over the guest's tables whose memory is `frames`; null while guest paging is off. */
    public guestWalker: GuestWalker | null,
    readonly frames: NestedFrameSource,
  ) {
    this.host = frames.nested;
  }

  /** Walks linear address (vaHi, vaLo) for an access (ACCESS_* bits). */
  walk(vaHi: number, vaLo: number, access: number): number {
    const frames = this.frames;
    frames.reset();
    this.walks++;
    let gpa: number;
    let guestUser = false;
    let guestRefs = 0;
    let shift = 30;
    const gw = this.guestWalker;
    if (gw !== null) {
      const g = this.guest;
      const ok = gw.walk(vaHi, vaLo, access, g);
      guestRefs = g.depth - (g.registerMask !== 0 ? 1 : 0);
      if (frames.failed) return this.hostFault(true, guestRefs);
      if (!ok) {
        this.refs = guestRefs + frames.refs;
        this.totalRefs += this.refs;
        return TWO_D_GUEST_FAULT;
      }
      gpa = g.address;
      guestUser = (g.effective & X86_EFF_U) !== 0;
      shift = g.pageShift;
    } else gpa = vaLo >>> 0; // paging off: linear = guest-physical (32-bit)

    // The final guest-physical address, as a data access of the kind the guest made.
    const hostWalker = frames.hostWalker;
    const ept = hostWalker.format.kind === FORMAT_EPT;
    const finalAccess =
      (access & (ACCESS_WRITE | ACCESS_FETCH)) |
      (ept ? ACCESS_LINEAR_VALID | (guestUser ? ACCESS_USER : 0) : ACCESS_USER);
    const h = this.host;
    const ok = hostWalker.walk(Math.floor(gpa / 0x100000000), gpa >>> 0, finalAccess, h);
    frames.refs += h.depth;
    if (!ok) return this.hostFault(false, guestRefs);
    this.guestPhysical = gpa;
    this.hostPhysical = h.address;
    this.pageShift = Math.min(shift, h.pageShift);
    this.refs = guestRefs + frames.refs;
    this.totalRefs += this.refs;
    this.completed++;
    this.completedRefs += this.refs;
    return TWO_D_OK;
  }

  private hostFault(onTable: boolean, guestRefs: number): number {
    this.hostFaultOnTable = onTable;
    this.refs = guestRefs + this.frames.refs;
    this.totalRefs += this.refs;
    return TWO_D_HOST_FAULT;
  }
}
