/**
 * A shadow page's role: everything besides the guest frame that decides what its entries
 * must contain, packed in one number like KVM's `kvm_mmu_page_role`. Two shadow pages for
 * the same guest table are the same page exactly when their roles are equal.
 *
 * ```
 *  bits  0..2  level (1 = 4 KiB entries .. 5)
 *  bit   3     direct: maps a guest-physical range (a guest large page, or paging off), not a guest table
 *  bits  4..5  quadrant: which part of a 32-bit guest table this page shadows (a 1024-entry
 *              guest table needs two (PT) or four (PD) 512-entry shadow pages)
 *  bit   6     the guest's entries are 4 bytes (32-bit paging)
 *  bits  7..9  access inherited from the guest entries above: W, U, X (ACC_*)
 *  bit  10     guest CR0.WP
 *  bit  11     guest SMEP and not WP (KVM's smep_andnot_wp: the WP=0 trick interacts with SMEP)
 *  bit  12     guest SMAP and not WP
 *  bit  13     guest EFER.NXE
 *  bit  14     PAE-style root (a host PML4 + PDPT standing for the guest's 4 PDPTEs or 32-bit PD)
 * ```
 */

export const ACC_W = 1;
export const ACC_U = 2;
export const ACC_X = 4;
export const ACC_ALL = 7;

export const ROLE_DIRECT = 1 << 3;
export const ROLE_QUADRANT_SHIFT = 4;
export const ROLE_GPTE32 = 1 << 6;
export const ROLE_ACCESS_SHIFT = 7;
export const ROLE_WP = 1 << 10;
export const ROLE_SMEP_ANDNOT_WP = 1 << 11;
export const ROLE_SMAP_ANDNOT_WP = 1 << 12;
export const ROLE_NXE = 1 << 13;
export const ROLE_PAE_ROOT = 1 << 14;

/** The bits that come from the CPU state (the same for every page of one MMU context). */
export const ROLE_CPU_MASK = ROLE_GPTE32 | ROLE_WP | ROLE_SMEP_ANDNOT_WP | ROLE_SMAP_ANDNOT_WP | ROLE_NXE;

export function roleLevel(role: number): number {
  return role & 7;
}

export function roleAccess(role: number): number {
  return (role >>> ROLE_ACCESS_SHIFT) & 7;
}

export function roleQuadrant(role: number): number {
  return (role >>> ROLE_QUADRANT_SHIFT) & 3;
}

/** A child role: same CPU bits, another level, access and quadrant; direct or not. */
export function childRole(
  cpuBits: number,
  level: number,
  access: number,
  quadrant: number,
  direct: boolean,
): number {
  return (
    cpuBits |
    level |
    (direct ? ROLE_DIRECT : 0) |
    (quadrant << ROLE_QUADRANT_SHIFT) |
    (access << ROLE_ACCESS_SHIFT)
  );
}

export function describeRole(role: number): string {
  const parts = [`L${roleLevel(role)}`];
  if (role & ROLE_DIRECT) parts.push("direct");
  if (role & ROLE_PAE_ROOT) parts.push("pae-root");
  if (role & ROLE_GPTE32) parts.push(`gpte32 q${roleQuadrant(role)}`);
  const a = roleAccess(role);
  parts.push(`${a & ACC_W ? "w" : "-"}${a & ACC_U ? "u" : "-"}${a & ACC_X ? "x" : "-"}`);
  if (!(role & ROLE_WP)) parts.push("!wp");
  return parts.join(" ");
}
