/*
 * vmmu conformance kernel -- fixed physical layout and shared constants.
 *
 * Included from C and from GNU assembler (.S) files, so only #defines here.
 * Every address below is also published in ../layout.json and ../FORMAT.md;
 * keep the three in sync.
 */
#ifndef VMMU_LAYOUT_H
#define VMMU_LAYOUT_H

/* ---- physical memory map (QEMU -m 256M) ------------------------------- */
#define KERNEL_BASE        0x00100000  /* kernel image (text/data/bss/stacks), < 1 MiB  */
#define KERNEL_LIMIT       0x00200000
#define USER_STUB          0x00300000  /* U=1 page: copy of the access stub             */
#define USER_STACK         0x00301000  /* U=1 page: user stack (never actually touched)  */
#define USER_STACK_TOP     0x00302000
#define HARNESS_LIMIT      0x00400000  /* linear 0..4 MiB = the harness region            */
#define DATA_PAGE          0x00400000  /* read/write target, filled with 0xCC            */
#define CODE_PAGE          0x00401000  /* fetch target, filled with 0xCC (int3)          */
#define SCRATCH_BASE       0x01000000  /* case table pages                               */
#define SCRATCH_LIMIT      0x04000000
#define BATCH_ADDR         0x04000000  /* -device loader,file=BATCH,addr=0x04000000      */
#define BATCH_LIMIT        0x08000000  /* batches up to 64 MiB                           */
#define RAM_LIMIT          0x10000000  /* 256 MiB, all identity mapped by the home tables */

/* ---- harness page tables (all 4 KiB pages, below 8 MiB) -------------- */
/* 32-bit paging (mode 0) */
#define M0_HOME_PD         0x00200000  /* home CR3                                        */
#define M0_PT              0x00201000  /* maps linear 0..4 MiB (case-visible)             */
#define M0_HOME_PTS        0x00202000  /* 63 PTs mapping 4 MiB..256 MiB (home only)       */
/* PAE paging (mode 1) */
#define M1_HOME_PDPT       0x00250000  /* home CR3                                        */
#define M1_HOME_PD         0x00251000  /* PD[0..1] -> PT0/PT1, PD[2..127] 2 MiB leaves   */
#define M1_PT0             0x00252000  /* maps linear 0..2 MiB                            */
#define M1_PT1             0x00253000  /* maps linear 2..4 MiB                            */
#define M1_PD              0x00254000  /* case-visible PD: only PD[0], PD[1]              */
/* 4-level and 5-level paging (modes 2, 3) */
#define M2_HOME_PML5       0x00260000  /* home CR3 in mode 3                              */
#define M2_HOME_PML4       0x00261000  /* home CR3 in mode 2                              */
#define M2_HOME_PDPT       0x00262000
#define M2_HOME_PD         0x00263000  /* PD[0..1] -> PT0/PT1, PD[2..127] 2 MiB leaves   */
#define M2_PML4            0x00264000  /* case-visible chain: PML4[0] -> PDPT            */
#define M2_PDPT            0x00265000  /*                     PDPT[0] -> PD              */
#define M2_PD              0x00266000  /*                     PD[0..1] -> PT0, PT1       */
#define M2_PT0             0x00267000
#define M2_PT1             0x00268000

/* Entry flag sets used by the harness (A and D preset so the CPU never writes them). */
#define HE_NONLEAF         0x027       /* P RW US A                                      */
#define HE_LEAF_SUP        0x063       /* P RW A D            (U=0)                      */
#define HE_LEAF_USER       0x067       /* P RW US A D         (U=1)                      */
#define HE_LARGE_SUP       0x0E3       /* P RW A D PS         (2 MiB home leaves)        */
#define HE_PAE_PDPTE       0x001       /* P only: other low bits are reserved in PDPTEs  */
#define HARNESS_PKEY       15          /* protection key of IA-32e harness leaves         */

/* ---- segments --------------------------------------------------------- */
#define SEL_KCODE          0x08        /* 32-bit kernel: code32; 64-bit kernel: code64   */
#define SEL_KDATA          0x10
#define SEL_KCODE32        0x18        /* 64-bit kernel only: 32-bit code for boot       */
#define SEL_UDATA          0x20        /* DPL 3                                          */
#define SEL_UCODE          0x28        /* DPL 3 (32- or 64-bit, as the kernel)           */
#define SEL_TSS            0x30

/* ---- vectors ---------------------------------------------------------- */
#define VEC_DONE           0x81        /* "access completed" software interrupt, DPL 3   */

/* ---- struct run (shared by C and assembly; every field is 8 bytes) --- */
#define RUN_CR3            0
#define RUN_VA             8
#define RUN_CR0            16
#define RUN_CR4            24
#define RUN_NXE            32
#define RUN_PKRU           40
#define RUN_PKRS           48
#define RUN_OPTS           56
#define RUN_VEC            64
#define RUN_ERR            72
#define RUN_CR2            80
#define RUN_RIP            88
#define RUN_HOME_CR3       96
#define RUN_HOME_CR4       104
#define RUN_HOME_CR0       112
#define RUN_SIZE           120

#define OPT_WRPKRS         0x01        /* CPU has PKS: write IA32_PKRS                    */
#define OPT_CPL3           0x02
#define OPT_AC             0x04
#define OPT_KIND_SHIFT     4           /* 0 read, 1 write, 2 fetch                        */

/* ---- architectural constants ------------------------------------------ */
#define CR0_PE             0x00000001
#define CR0_WP             0x00010000
#define CR0_PG             0x80000000
#define CR4_PSE            0x00000010
#define CR4_PAE            0x00000020
#define CR4_PGE            0x00000080
#define CR4_LA57           0x00001000
#define CR4_SMEP           0x00100000
#define CR4_SMAP           0x00200000
#define CR4_PKE            0x00400000
#define CR4_PKS            0x01000000
#define MSR_EFER           0xC0000080
#define EFER_LME           0x00000100
#define EFER_NXE           0x00000800
#define MSR_PKRS           0x000006E1
#define EFL_AC             0x00040000

#define DEBUGCON_PORT      0xE9
#define DEBUG_EXIT_PORT    0xF4
#define EXIT_OK            0x10        /* QEMU exit status (0x10<<1)|1 = 33               */
#define EXIT_ERROR         0x11        /* QEMU exit status (0x11<<1)|1 = 35               */

#endif
