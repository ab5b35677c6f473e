/**
 * x86 architectural bits: control registers and paging-structure entries.
 *
 * Every bit is named once, here. Entries are handled as two 32-bit halves
 * (`lo` = bits 31:0, `hi` = bits 63:32), so each 64-bit bit has a `*_LO` or
 * `*_HI` mask. Sources: Intel SDM Vol. 3A ch. 2 (control registers) and
 * ch. 4 (paging); AMD APM Vol. 2 ch. 5.
 *
 * ```
 *  64-bit paging entry (4-level/5-level, PAE PDE/PTE)
 *  63  62..59  58..52  51........M  M-1.........12  11..9  8  7  6  5  4   3   2   1  0
 * [XD][ PK   ][ ign  ][ reserved  ][ address      ][ ign ][G][PS][D][A][PCD][PWT][US][RW][P]
 *      (leaf only)                                         leaf: PS=1 on PDE/PDPTE; PAT on PTE
 *
 *  32-bit paging entry
 *  31..........12  11..9  8  7  6  5  4   3   2   1  0
 * [ address      ][ ign ][G][PS][D][A][PCD][PWT][US][RW][P]
 *  4 MiB PDE (CR4.PSE=1, PS=1):  31..22 address 31:22, 21 reserved, 20..13 address bits 39:32 (PSE-36), 12 PAT
 * ```
 */

export const CR0_PE = 1 << 0;
export const CR0_WP = 1 << 16;
export const CR0_NW = 1 << 29;
export const CR0_CD = 1 << 30;
export const CR0_PG = 1 << 31;

export const CR4_PSE = 1 << 4;
export const CR4_PAE = 1 << 5;
export const CR4_PGE = 1 << 7;
export const CR4_LA57 = 1 << 12;
export const CR4_PCIDE = 1 << 17;
export const CR4_SMEP = 1 << 20;
export const CR4_SMAP = 1 << 21;
export const CR4_PKE = 1 << 22;
export const CR4_PKS = 1 << 24;

export const EFER_LME = 1 << 8;
export const EFER_LMA = 1 << 10;
export const EFER_NXE = 1 << 11;

export const RFLAGS_AC = 1 << 18;

/** Present. */
export const PTE_P = 1 << 0;
/** Read/write: 0 forbids writes through this entry. */
export const PTE_RW = 1 << 1;
/** User/supervisor: 0 forbids user-mode accesses through this entry. */
export const PTE_US = 1 << 2;
export const PTE_PWT = 1 << 3;
export const PTE_PCD = 1 << 4;
/** Accessed: set by the processor when it uses the entry. */
export const PTE_A = 1 << 5;
/** Dirty: set by the processor on the first write through a leaf. */
export const PTE_D = 1 << 6;
/** Page size on PDE/PDPTE (leaf when set); PAT on a 4 KiB PTE. */
export const PTE_PS = 1 << 7;
/** Global (leaf, CR4.PGE). */
export const PTE_G = 1 << 8;
/** PAT on a large-page leaf (bit 12). */
export const PTE_LARGE_PAT = 1 << 12;
/** Execute-disable, bit 63 (reserved unless EFER.NXE=1). */
export const PTE_XD_HI = 1 << 31;
/** Protection key, bits 62:59 of a leaf in 4/5-level paging. */
export const PTE_PK_SHIFT_HI = 27;
export const PTE_PK_MASK_HI = 0xf << PTE_PK_SHIFT_HI;

/** Address bits 31:12 of an entry's low half. */
export const ADDR_LO = 0xfffff000;
/** Address bits 51:32 of an entry's high half (bits M..51 are checked as reserved separately). */
export const ADDR_HI = 0x000fffff;

/** #PF error code bits (SDM 4.7). */
export const PFEC_P = 1 << 0;
export const PFEC_W = 1 << 1;
export const PFEC_U = 1 << 2;
export const PFEC_RSVD = 1 << 3;
export const PFEC_I = 1 << 4;
export const PFEC_PK = 1 << 5;

/** Exception vectors the walker can raise. */
export const VECTOR_GP = 13;
export const VECTOR_PF = 14;
