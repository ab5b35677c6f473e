/*
 * Kernel for mode 2 (4-level paging) and mode 3 (5-level paging).
 * Linked as x86-64 and converted to ELF32 (objcopy -O elf32-i386) so that
 * QEMU's Multiboot loader accepts it; the entry point is 32-bit code.
 */
#include "layout.h"
#define PTR .quad
#define AX %rax

#include "common.S"

	.section .text.entry, "ax"
	.code32
	.globl _start
_start:
	/* Multiboot state: 32-bit protected mode, flat segments, paging off. */
	cli
	lgdt gdt_ptr
	ljmp $SEL_KCODE32, $1f
1:	mov $SEL_KDATA, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov %ax, %fs
	mov %ax, %gs
	mov $stack_top, %esp

	/* Enter IA-32e mode (SDM Vol. 3A 10.8.5 "Initializing IA-32e Mode"):
	 * CR4.PAE = 1 (and CR4.LA57 for 5-level paging: LA57 cannot be
	 * changed while IA32_EFER.LMA = 1, SDM 4.1.1 / 2.5), CR3 = boot
	 * tables, IA32_EFER.LME = 1, then CR0.PG = 1. The batch header is
	 * read here (flat physical memory) to choose 4- or 5-level paging. */
	mov %cr4, %eax
	or $CR4_PAE, %eax
	mov $boot_pml4, %edx
	cmpl $3, BATCH_ADDR + 12           /* header.mode */
	jne 2f
	or $CR4_LA57, %eax
	mov $boot_pml5, %edx
2:	mov %eax, %cr4
	mov %edx, %cr3
	mov $MSR_EFER, %ecx
	rdmsr
	or $EFER_LME, %eax
	wrmsr
	mov %cr0, %eax
	or $(CR0_PG | CR0_WP | CR0_PE), %eax
	mov %eax, %cr0
	ljmp $SEL_KCODE, $3f               /* now in 64-bit mode (LMA = 1) */
	.code64
3:	mov $SEL_KDATA, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	xor %eax, %eax
	mov %ax, %fs
	mov %ax, %gs
	mov $stack_top, %rsp
	call kmain
4:	hlt
	jmp 4b

	.text
/* void load_cr3(uint64_t) */
	.globl load_cr3
load_cr3:
	mov %rdi, %cr3
	ret

/* void load_tr(void) */
	.globl load_tr
load_tr:
	mov $SEL_TSS, %ax
	ltr %ax
	ret

/* void run_case(struct run *r) -- see boot32.S for the 32-bit twin. */
	.globl run_case
run_case:
	push %rbx
	push %rbp
	push %r12
	push %r13
	push %r14
	push %r15
	mov %rsp, saved_sp(%rip)
	mov %rdi, cur_run(%rip)
	mov %rdi, %rbx

	testq $OPT_WRPKRS, RUN_OPTS(%rbx)   /* IA32_PKRS (only if the CPU has PKS) */
	jz 1f
	mov $MSR_PKRS, %ecx
	mov RUN_PKRS(%rbx), %eax
	xor %edx, %edx
	wrmsr
1:	mov $MSR_EFER, %ecx                 /* EFER.NXE (keep LME/LMA) */
	rdmsr
	and $~EFER_NXE, %eax
	cmpq $0, RUN_NXE(%rbx)
	je 2f
	or $EFER_NXE, %eax
2:	wrmsr
	mov RUN_CR4(%rbx), %rax             /* CR4: SMEP SMAP PKE PKS (PGE, PCIDE always 0) */
	mov %rax, %cr4
	test $CR4_PKE, %eax                 /* WRPKRU is #UD unless CR4.PKE = 1 */
	jz 3f
	xor %ecx, %ecx
	xor %edx, %edx
	mov RUN_PKRU(%rbx), %eax
	wrpkru
3:	mov RUN_CR0(%rbx), %rax             /* CR0.WP */
	mov %rax, %cr0
	mov RUN_OPTS(%rbx), %r12
	mov RUN_VA(%rbx), %r13
	mov RUN_CR3(%rbx), %rax
	/* Full flush: CR4.PGE = 0 and CR4.PCIDE = 0, so MOV CR3 invalidates
	 * every TLB entry and paging-structure cache (SDM Vol. 3A 4.10.4.1).
	 * May #GP (reserved CR3 bits, SDM 2.5 / MOV CR). */
	mov %rax, %cr3
	mov %r13, %rax                      /* va */
	mov %r12, %rcx
	shr $OPT_KIND_SHIFT, %ecx
	and $3, %ecx                        /* kind */
	mov $0xCC, %edx                     /* byte stored by a write */
	test $OPT_CPL3, %r12
	jnz 5f
	pushfq                              /* CPL0: RFLAGS.AC as requested */
	andq $~EFL_AC, (%rsp)
	test $OPT_AC, %r12
	jz 4f
	orq $EFL_AC, (%rsp)
4:	popfq
	jmp access_stub
5:	/* CPL3: IRETQ to the user copy of the stub (SDM Vol. 3A 6.14.3). */
	push $(SEL_UDATA | 3)               /* SS */
	push $USER_STACK_TOP                /* RSP */
	mov $0x2, %ebp                      /* RFLAGS: IF=0, IOPL=0 */
	test $OPT_AC, %r12
	jz 6f
	or $EFL_AC, %ebp
6:	push %rbp
	push $(SEL_UCODE | 3)               /* CS */
	push $USER_STUB                     /* RIP */
	iretq

/* Common exception path. Stack: vector, error code, RIP, CS, RFLAGS, RSP, SS.
 * Runs first with the case's paging state: everything it touches (code,
 * stack, cur_run) is a supervisor page of the harness region with pkey 15. */
isr_common:
	mov %cr2, %rax
	mov cur_run(%rip), %rbx
	test %rbx, %rbx
	jz 9f
	mov RUN_HOME_CR0(%rbx), %rcx        /* back to the harness state ... */
	mov %rcx, %cr0
	mov RUN_HOME_CR4(%rbx), %rcx        /* ... SMEP/SMAP/PKE/PKS off ... */
	mov %rcx, %cr4
	mov RUN_HOME_CR3(%rbx), %rcx        /* ... and the home tables */
	mov %rcx, %cr3
	push $0x2                           /* RFLAGS.AC = 0 */
	popfq
	mov %rax, RUN_CR2(%rbx)
	mov 0(%rsp), %rcx
	mov %rcx, RUN_VEC(%rbx)
	mov 8(%rsp), %rcx
	mov %rcx, RUN_ERR(%rbx)
	mov 16(%rsp), %rcx
	mov %rcx, RUN_RIP(%rbx)
	movq $0, cur_run(%rip)
	mov $SEL_KDATA, %ecx
	mov %cx, %ss
	mov %cx, %ds
	mov %cx, %es
	mov saved_sp(%rip), %rsp
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %rbp
	pop %rbx
	ret
9:	/* exception outside run_case: a harness bug */
	mov %rax, %rdi                      /* cr2 */
	mov 0(%rsp), %rsi                   /* vector */
	mov 8(%rsp), %rdx                   /* error code */
	mov 16(%rsp), %rcx                  /* rip */
	and $~15, %rsp
	call panic_exception
1:	hlt
	jmp 1b

	.data
	.balign 8
	.globl gdt
gdt:
	.quad 0
	.quad 0x00AF9A000000FFFF            /* 0x08 kernel code64 */
	.quad 0x00CF92000000FFFF            /* 0x10 kernel data */
	.quad 0x00CF9A000000FFFF            /* 0x18 kernel code32 (boot only) */
	.quad 0x00CFF2000000FFFF            /* 0x20 user data, DPL3 */
	.quad 0x00AFFA000000FFFF            /* 0x28 user code64, DPL3 */
	.quad 0, 0                          /* 0x30 TSS (16 bytes), filled by C */
gdt_end:
gdt_ptr:
	.word gdt_end - gdt - 1
	.quad gdt

/* Boot page tables: identity map 0..256 MiB with 2 MiB pages, used only
 * until kmain() builds and loads the home tables. */
	.balign 4096
boot_pml5:
	.quad boot_pml4 + 0x003
	.fill 511, 8, 0
boot_pml4:
	.quad boot_pdpt + 0x003
	.fill 511, 8, 0
boot_pdpt:
	.quad boot_pd + 0x003
	.fill 511, 8, 0
boot_pd:
	.set i, 0
	.rept 128
	.quad (i << 21) + 0x083
	.set i, i + 1
	.endr
	.fill 384, 8, 0

	.bss
	.balign 16
	.space 65536
stack_top:
