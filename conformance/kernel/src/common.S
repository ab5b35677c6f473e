/*
 * Pieces shared by both kernels' assembly (included from boot32.S / boot64.S).
 */

/* Multiboot 1 header (Multiboot Specification 0.6.96, section 3.1.1).
 * flags = 0: the loader takes the load addresses from the ELF32 program
 * headers, which QEMU's -kernel does for ELF32 images. */
	.section .multiboot, "a"
	.balign 4
	.long 0x1BADB002
	.long 0
	.long -0x1BADB002

/* Vector stubs: push a dummy error code where the CPU does not push one,
 * then the vector number, and go to the common handler. Vectors with an
 * error code: 8, 10-14, 17, 21, 29, 30 (SDM Vol. 3A, 6.15 / 6.3.1). */
	.macro ISR vec
	.text
	.balign 16
isr_\vec:
	.if (\vec == 8) || ((\vec >= 10) && (\vec <= 14)) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
	.else
	push $0
	.endif
	push $\vec
	jmp isr_common
	.data
	PTR isr_\vec
	.endm

	.data
	.balign 8
	.globl isr_table
isr_table:                  /* isr_table[0..31] = exceptions, isr_table[32] = VEC_DONE */
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	ISR \v
	.endr
	ISR VEC_DONE

/* The access stub. Entered with AX/EAX/RAX = linear address, ECX = kind
 * (0 read, 1 write, 2 fetch), DL = byte to store. It is executed in place
 * (supervisor page) for CPL0 cases and copied to USER_STUB (U=1 page) for
 * CPL3 cases, so it must be position independent. It never touches the
 * stack. A completed read/write ends with INT VEC_DONE; a fetch jumps to the
 * linear address, where the code page's 0xCC (INT3) raises #BP with the
 * saved IP = va + 1, which the C side recognises as "fetch completed". */
	.text
	.balign 16
	.globl access_stub, access_stub_end
access_stub:
	cmp $1, %ecx
	je 1f
	cmp $2, %ecx
	je 2f
	movb (AX), %dl          /* read: one byte load */
	int $VEC_DONE
1:	movb %dl, (AX)          /* write: one byte store */
	int $VEC_DONE
2:	jmp *AX                 /* fetch: one INT3 byte */
access_stub_end:

	.bss
	.balign 16
	.globl isr_stack_top
	.space 16384
isr_stack_top:              /* TSS.ESP0/RSP0: stack for exceptions taken at CPL3 */
	.globl saved_sp, cur_run
	.balign 8
saved_sp:	.space 8
cur_run:	.space 8
