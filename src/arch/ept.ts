/**
 * Intel EPT and AMD NPT facts: entry bits, the EPTP, and exit information.
 * Sources: Intel SDM Vol. 3C 29.3 (EPT), 28.2.1 Table 28-7 (EPT violation exit
 * qualification), 25.6.11 (EPTP); AMD APM Vol. 2 15.25 (nested paging).
 *
 * ```
 *  EPT entry
 *  63   62..52  51.......M  M-1.........12  11  10   9  8  7   6    5..3   2  1  0
 * [SVE][ ign  ][ reserved ][ address      ][ign][XU][D][A][PS][IPAT][ MT  ][X][W][R]
 *                                                (MBEC)     leaf: PS on PDE/PDPTE, ignored on PTE
 *  non-leaf: bits 7:3 reserved; leaf: MT (memory type) 2, 3, 7 reserved
 * ```
 */

export const EPT_R = 1 << 0;
export const EPT_W = 1 << 1;
/** Execute; with mode-based execute control (MBEC): supervisor-mode execute. */
export const EPT_X = 1 << 2;
export const EPT_MT_SHIFT = 3;
export const EPT_MT_MASK = 7 << EPT_MT_SHIFT;
export const EPT_IPAT = 1 << 6;
export const EPT_PS = 1 << 7;
/** Accessed, when the EPTP enables A/D flags. */
export const EPT_A = 1 << 8;
/** Dirty (leaf), when the EPTP enables A/D flags. */
export const EPT_D = 1 << 9;
/** User-mode execute, with MBEC. */
export const EPT_XU = 1 << 10;
/** Suppress #VE, bit 63. */
export const EPT_SVE_HI = 1 << 31;

export const EPT_MT_UC = 0;
export const EPT_MT_WB = 6;

/** EPTP fields (SDM 25.6.11). */
export const EPTP_MT_MASK = 7;
export const EPTP_WALK_SHIFT = 3;
export const EPTP_WALK_MASK = 7 << EPTP_WALK_SHIFT;
export const EPTP_AD = 1 << 6;

/** EPT violation exit qualification (SDM Table 28-7). */
export const EPTQ_READ = 1 << 0;
export const EPTQ_WRITE = 1 << 1;
export const EPTQ_FETCH = 1 << 2;
export const EPTQ_READABLE = 1 << 3;
export const EPTQ_WRITABLE = 1 << 4;
/** Executable (with MBEC: executable for supervisor-mode linear addresses). */
export const EPTQ_EXECUTABLE = 1 << 5;
/** Executable for user-mode linear addresses (MBEC only). */
export const EPTQ_USER_EXECUTABLE = 1 << 6;
export const EPTQ_LINEAR_VALID = 1 << 7;
/** With bit 7: 1 = the access was to the translated linear address, 0 = to a guest paging structure. */
export const EPTQ_LINEAR_TRANSLATION = 1 << 8;

/** AMD nested page fault EXITINFO1 high bits (APM 15.25.6), as bits of the upper 32-bit half. */
export const NPF_FINAL_GPA_HI = 1 << 0;
export const NPF_GUEST_TABLE_HI = 1 << 1;
