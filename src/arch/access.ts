/**
 * Access descriptors: what kind of memory access a walk is for, as a small bit set
 * passed by value on the hot path. The low five bits index the permission tables.
 */

/** A data write (else a data read, unless FETCH). */
export const ACCESS_WRITE = 1 << 0;
/** An instruction fetch. */
export const ACCESS_FETCH = 1 << 1;
/**
 * x86: a user-mode access (CPL 3, explicit). EPT/MBEC: the guest linear address is a
 * user-mode address. NPT: always set (nested walks are user accesses).
 */
export const ACCESS_USER = 1 << 2;
/** x86: an implicit supervisor-mode access (GDT/IDT/TSS/LDT), whatever the CPL. */
export const ACCESS_IMPLICIT = 1 << 3;
/** x86: EFLAGS.AC was 1 at the access (disables SMAP for explicit supervisor accesses). */
export const ACCESS_AC = 1 << 4;
/** EPT/NPT: the access is to a guest paging-structure entry (else to the final guest-physical address). */
export const ACCESS_GUEST_TABLE = 1 << 5;
/** EPT: the guest linear address of the access is known (exit qualification bit 7). */
export const ACCESS_LINEAR_VALID = 1 << 6;

/** The part of an access descriptor that selects a permission-table row. */
export const ACCESS_PERM_INDEX_MASK = 0x1f;

export type AccessKind = "read" | "write" | "fetch";

export function accessKindBits(kind: AccessKind): number {
  switch (kind) {
    case "read":
      return 0;
    case "write":
      return ACCESS_WRITE;
    case "fetch":
      return ACCESS_FETCH;
    default:
      throw new RangeError(`access kind "${kind as string}" is not read, write or fetch`);
  }
}

/** Effective-rights bits the permission tables are indexed by (x86). */
export const X86_EFF_W = 1;
export const X86_EFF_U = 2;
export const X86_EFF_X = 4;
/** Effective-rights bits (EPT): R, W, X (supervisor X with MBEC), XU. */
export const EPT_EFF_R = 1;
export const EPT_EFF_W = 2;
export const EPT_EFF_X = 4;
export const EPT_EFF_XU = 8;
