/*
 * Kernel for mode 0 (32-bit paging) and mode 1 (PAE paging).
 * Runs in 32-bit protected mode. Multiboot enters at _start with a flat
 * 32-bit CS, paging off, interrupts off (Multiboot spec 3.2).
 */
#include "layout.h"
#define PTR .long
#define AX %eax

	.code32
#include "common.S"

	.section .text.entry, "ax"
	.globl _start
_start:
	cli
	lgdt gdt_ptr
	ljmp $SEL_KCODE, $1f
1:	mov $SEL_KDATA, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov %ax, %fs
	mov %ax, %gs
	mov $stack_top, %esp
	call kmain
2:	hlt
	jmp 2b

/* void enable_paging(uint32_t cr3, uint32_t cr4)
 * SDM Vol. 3A 4.1.2 / 10.9.1: load CR3 and CR4 (PAE or not), then set
 * CR0.PG (with PE already set by the loader) and CR0.WP. */
	.text
	.globl enable_paging
enable_paging:
	mov 4(%esp), %eax
	mov %eax, %cr3
	mov 8(%esp), %eax
	mov %eax, %cr4
	mov %cr0, %eax
	or $(CR0_PG | CR0_WP | CR0_PE), %eax
	mov %eax, %cr0
	jmp 1f                  /* serialising branch after enabling paging */
1:	ret

/* void load_tr(void) */
	.globl load_tr
load_tr:
	mov $SEL_TSS, %ax
	ltr %ax
	ret

/* void run_case(struct run *r)
 * Loads the case state, switches to the case CR3, performs the access at
 * CPL0 or CPL3, and returns (through isr_common) once the access completed
 * or faulted. See layout.h for the struct run offsets. */
	.globl run_case
run_case:
	push %ebx
	push %ebp
	push %esi
	push %edi
	mov %esp, saved_sp
	mov 20(%esp), %ebx
	mov %ebx, cur_run

	testl $OPT_WRPKRS, RUN_OPTS(%ebx)    /* IA32_PKRS (only if the CPU has PKS) */
	jz 1f
	mov $MSR_PKRS, %ecx
	mov RUN_PKRS(%ebx), %eax
	xor %edx, %edx
	wrmsr
1:	mov $MSR_EFER, %ecx                  /* EFER.NXE */
	rdmsr
	and $~EFER_NXE, %eax
	cmpl $0, RUN_NXE(%ebx)
	je 2f
	or $EFER_NXE, %eax
2:	wrmsr
	mov RUN_CR4(%ebx), %eax              /* CR4: PSE SMEP SMAP PKE PKS (PGE always 0) */
	mov %eax, %cr4
	test $CR4_PKE, %eax                  /* WRPKRU is #UD unless CR4.PKE = 1 */
	jz 3f
	xor %ecx, %ecx
	xor %edx, %edx
	mov RUN_PKRU(%ebx), %eax
	wrpkru
3:	mov RUN_CR0(%ebx), %eax              /* CR0.WP */
	mov %eax, %cr0
	mov RUN_OPTS(%ebx), %esi
	mov RUN_VA(%ebx), %edi
	mov RUN_CR3(%ebx), %eax
	/* MOV CR3 flushes all TLB entries and paging-structure caches since
	 * CR4.PGE = 0 and CR4.PCIDE = 0 (SDM Vol. 3A 4.10.4.1). In PAE mode
	 * it also loads the PDPTEs (SDM 4.4.1) and may #GP. */
	mov %eax, %cr3
	mov %edi, %eax                       /* va */
	mov %esi, %ecx
	shr $OPT_KIND_SHIFT, %ecx
	and $3, %ecx                         /* kind */
	mov $0xCC, %edx                      /* byte stored by a write */
	test $OPT_CPL3, %esi
	jnz 5f
	pushf                                /* CPL0: EFLAGS.AC as requested */
	andl $~EFL_AC, (%esp)
	test $OPT_AC, %esi
	jz 4f
	orl $EFL_AC, (%esp)
4:	popf
	jmp access_stub
5:	/* CPL3: IRET to the user copy of the stub (SDM Vol. 3A 6.12.1 / IRET).
	 * DS/ES get the DPL3 data segment first, or IRET would null them. */
	mov $(SEL_UDATA | 3), %ebp
	mov %bp, %ds
	mov %bp, %es
	push $(SEL_UDATA | 3)                /* SS */
	push $USER_STACK_TOP                 /* ESP */
	mov $0x2, %ebp                       /* EFLAGS: IF=0, IOPL=0 */
	test $OPT_AC, %esi
	jz 6f
	or $EFL_AC, %ebp
6:	push %ebp
	push $(SEL_UCODE | 3)                /* CS */
	push $USER_STUB                      /* EIP */
	iret

/* Common exception path. Stack: vector, error code, EIP, CS, EFLAGS [, ESP, SS].
 * Runs first with the case's paging state, so everything it touches lives
 * in the harness region (kernel pages, pkey irrelevant in 32-bit modes). */
isr_common:
	mov %cr2, %eax
	mov $SEL_KDATA, %ecx
	mov %cx, %ds
	mov %cx, %es
	mov cur_run, %ebx
	test %ebx, %ebx
	jz 9f
	mov RUN_HOME_CR0(%ebx), %ecx         /* back to the harness state ... */
	mov %ecx, %cr0
	mov RUN_HOME_CR4(%ebx), %ecx         /* ... SMEP/SMAP/PKE/PKS off ... */
	mov %ecx, %cr4
	mov RUN_HOME_CR3(%ebx), %ecx         /* ... and the home tables */
	mov %ecx, %cr3
	push $0x2                            /* EFLAGS.AC = 0 */
	popf
	mov %eax, RUN_CR2(%ebx)
	movl $0, RUN_CR2+4(%ebx)
	mov 0(%esp), %ecx
	mov %ecx, RUN_VEC(%ebx)
	mov 4(%esp), %ecx
	mov %ecx, RUN_ERR(%ebx)
	mov 8(%esp), %ecx
	mov %ecx, RUN_RIP(%ebx)
	movl $0, RUN_RIP+4(%ebx)
	movl $0, cur_run
	mov saved_sp, %esp
	pop %edi
	pop %esi
	pop %ebp
	pop %ebx
	ret
9:	/* exception outside run_case: a harness bug */
	push %eax                            /* cr2 */
	call panic_exception                 /* (vector, err, eip, cs, eflags) on stack above */
1:	hlt
	jmp 1b

	.data
	.balign 8
	.globl gdt
gdt:
	.quad 0
	.quad 0x00CF9A000000FFFF             /* 0x08 kernel code32 */
	.quad 0x00CF92000000FFFF             /* 0x10 kernel data */
	.quad 0x00CF9A000000FFFF             /* 0x18 (kernel code32, unused) */
	.quad 0x00CFF2000000FFFF             /* 0x20 user data, DPL3 */
	.quad 0x00CFFA000000FFFF             /* 0x28 user code32, DPL3 */
	.quad 0                              /* 0x30 TSS, filled by C */
gdt_end:
gdt_ptr:
	.word gdt_end - gdt - 1
	.long gdt

	.bss
	.balign 16
	.space 65536
stack_top:
