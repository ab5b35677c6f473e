/*
 * vmmu conformance kernel: runs a batch of paging test cases (one memory
 * access each) and reports what the CPU did. Built twice from this file:
 * 32-bit (modes 0 and 1) and 64-bit (modes 2 and 3). The input and output
 * formats are specified in ../FORMAT.md; addresses live in layout.h.
 */
#include "layout.h"

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned long uword;  /* pointer-sized */

#ifdef __x86_64__
#define KERNEL_MODES_OK(m) ((m) == 2 || (m) == 3)
#else
#define KERNEL_MODES_OK(m) ((m) == 0 || (m) == 1)
#endif

struct run {  /* offsets: RUN_* in layout.h */
	u64 cr3, va, cr0, cr4, nxe, pkru, pkrs, opts;
	u64 vec, err, cr2, rip;
	u64 home_cr3, home_cr4, home_cr0;
};
_Static_assert(sizeof(struct run) == RUN_SIZE, "struct run layout");

extern void run_case(struct run *r);
extern void load_tr(void);
extern uword isr_table[33];
extern u8 access_stub[], access_stub_end[];
extern u8 isr_stack_top[];
extern u64 gdt[];
#ifdef __x86_64__
extern void load_cr3(u64 cr3);
#else
extern void enable_paging(u32 cr3, u32 cr4);
#endif

/* ---- port I/O and debug console ---------------------------------------- */

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }

/* Port 0xE9 writes go straight to the -debugcon chardev, so every byte is
 * visible in the output file as soon as it is written (no buffering here). */
static void putc_(char c) { outb(DEBUGCON_PORT, (u8)c); }
static void puts_(const char *s) { while (*s) putc_(*s++); }
static void puthex(u64 v)
{
	char buf[17];
	int n = 0;
	do { buf[n++] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
	while (n) putc_(buf[--n]);
}
static void putdec(u32 v)
{
	char buf[11];
	int n = 0;
	do { buf[n++] = (char)('0' + v % 10); v /= 10; } while (v);
	while (n) putc_(buf[--n]);
}

static void __attribute__((noreturn)) qemu_exit(u8 code)
{
	/* isa-debug-exit: QEMU exits with status (code << 1) | 1. */
	__asm__ volatile("outl %0, %1" ::"a"((u32)code), "Nd"((u16)DEBUG_EXIT_PORT));
	for (;;) __asm__ volatile("cli; hlt");
}

static void __attribute__((noreturn)) fail(const char *where, u32 index, const char *msg)
{
	puts_("ERR ");
	puts_(where);
	if (index != 0xFFFFFFFFu) { putc_(' '); putdec(index); }
	putc_(' ');
	puts_(msg);
	putc_('\n');
	qemu_exit(EXIT_ERROR);
}

void panic_exception(uword cr2, uword vec, uword err, uword ip)
{
	puts_("ERR PANIC vector=");
	puthex(vec);
	puts_(" err=");
	puthex(err);
	puts_(" ip=");
	puthex(ip);
	puts_(" cr2=");
	puthex(cr2);
	putc_('\n');
	qemu_exit(EXIT_ERROR);
}

/* ---- CPU helpers --------------------------------------------------------- */

static void cpuid(u32 leaf, u32 sub, u32 *a, u32 *b, u32 *c, u32 *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}
static uword read_cr0(void) { uword v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static uword read_cr4(void) { uword v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }

/* Physical memory is identity mapped (linear == physical) by the home tables. */
static inline void *phys(u64 pa) { return (void *)(uword)pa; }

static void memzero(void *p, u32 n)
{
	u8 *d = p;
	while (n--) *d++ = 0;
}
static void memfill(void *p, u8 v, u32 n)
{
	u8 *d = p;
	while (n--) *d++ = v;
}

/* ---- harness page tables -------------------------------------------------- */

/* Protection key 15 for IA-32e harness leaves (bits 62:59), see FORMAT.md. */
#define PKEY_BITS ((u64)HARNESS_PKEY << 59)

/* Leaf flags for the 4 KiB page at physical (= linear) address pa inside
 * the harness region 0..4 MiB: page 0 not present, user stub/stack U=1. */
static u64 harness_leaf_flags(u32 pa)
{
	if (pa == 0) return 0;
	if (pa == USER_STUB || pa == USER_STACK) return HE_LEAF_USER;
	return HE_LEAF_SUP;
}

static void build_tables_32bit(void)
{
	/* SDM Vol. 3A 4.3: 4-byte entries, 4 KiB pages only (no CR4.PSE). */
	u32 *pd = phys(M0_HOME_PD), *pt = phys(M0_PT);
	memzero(pd, 4096);
	for (u32 i = 0; i < 1024; i++) {
		u32 f = (u32)harness_leaf_flags(i << 12);
		pt[i] = f ? (i << 12) | f : 0;
	}
	pd[0] = M0_PT | HE_NONLEAF;
	for (u32 t = 1; t < RAM_LIMIT >> 22; t++) {  /* home: 4 MiB..256 MiB */
		u32 *hpt = phys(M0_HOME_PTS + (t - 1) * 4096);
		for (u32 i = 0; i < 1024; i++) hpt[i] = (t << 22) | (i << 12) | HE_LEAF_SUP;
		pd[t] = (M0_HOME_PTS + (t - 1) * 4096) | HE_NONLEAF;
	}
}

/* 8-byte-entry tables (PAE and IA-32e): the two PTs of the harness region
 * and a PD whose entries 2..127 map 4 MiB..256 MiB with 2 MiB pages. */
static void build_pts_64(u64 pt0, u64 pt1, u64 extra)
{
	u64 *t0 = phys(pt0), *t1 = phys(pt1);
	for (u32 i = 0; i < 512; i++) {
		u32 a0 = i << 12, a1 = (1u << 21) | (i << 12);
		u64 f0 = harness_leaf_flags(a0), f1 = harness_leaf_flags(a1);
		t0[i] = f0 ? a0 | f0 | extra : 0;
		t1[i] = f1 ? a1 | f1 | extra : 0;
	}
}
static void build_home_pd(u64 pd_pa, u64 pt0, u64 pt1, u64 extra)
{
	u64 *pd = phys(pd_pa);
	memzero(pd, 4096);
	pd[0] = pt0 | HE_NONLEAF;
	pd[1] = pt1 | HE_NONLEAF;
	for (u32 i = 2; i < RAM_LIMIT >> 21; i++) pd[i] = ((u64)i << 21) | HE_LARGE_SUP | extra;
}
static void build_chain_pd(u64 pd_pa, u64 pt0, u64 pt1)
{
	u64 *pd = phys(pd_pa);
	memzero(pd, 4096);
	pd[0] = pt0 | HE_NONLEAF;
	pd[1] = pt1 | HE_NONLEAF;
}
static void build_single(u64 table, u64 entry0)
{
	u64 *t = phys(table);
	memzero(t, 4096);
	t[0] = entry0;
}

static void build_tables_pae(void)
{
	/* SDM Vol. 3A 4.4: PDPTEs have only P, PWT, PCD and the address. */
	build_pts_64(M1_PT0, M1_PT1, 0);
	build_home_pd(M1_HOME_PD, M1_PT0, M1_PT1, 0);
	build_chain_pd(M1_PD, M1_PT0, M1_PT1);
	build_single(M1_HOME_PDPT, M1_HOME_PD | HE_PAE_PDPTE);
}

static void build_tables_ia32e(void)
{
	/* SDM Vol. 3A 4.5. Harness leaves carry protection key 15. */
	build_pts_64(M2_PT0, M2_PT1, PKEY_BITS);
	build_home_pd(M2_HOME_PD, M2_PT0, M2_PT1, PKEY_BITS);
	build_single(M2_HOME_PDPT, M2_HOME_PD | HE_NONLEAF);
	build_single(M2_HOME_PML4, M2_HOME_PDPT | HE_NONLEAF);
	build_single(M2_HOME_PML5, M2_HOME_PML4 | HE_NONLEAF);
	build_chain_pd(M2_PD, M2_PT0, M2_PT1);
	build_single(M2_PDPT, M2_PD | HE_NONLEAF);
	build_single(M2_PML4, M2_PDPT | HE_NONLEAF);
}

/* ---- descriptor tables ------------------------------------------------------- */

#ifdef __x86_64__
struct tss { u32 r0; u64 rsp0, rsp1, rsp2; u64 r1; u64 ist[7]; u64 r2; u16 r3, iomap; } __attribute__((packed));
static u64 idt[256 * 2] __attribute__((aligned(16)));
#else
struct tss { u32 link, esp0, ss0, esp1, ss1, esp2, ss2, cr3, eip, eflags, regs[8], segs[6], ldt; u16 trap, iomap; } __attribute__((packed));
static u64 idt[256] __attribute__((aligned(16)));
#endif
static struct tss tss __attribute__((aligned(16)));

static void set_gate(u32 vec, uword handler, u32 dpl)
{
	/* Interrupt gates (IF cleared on entry), SDM Vol. 3A 6.11 / 6.14.1. */
	u64 lo = (handler & 0xFFFF) | ((u64)SEL_KCODE << 16) | ((u64)(0x8E | (dpl << 5)) << 40) |
		 ((u64)((handler >> 16) & 0xFFFF) << 48);
#ifdef __x86_64__
	idt[vec * 2] = lo;
	idt[vec * 2 + 1] = (u64)handler >> 32;
#else
	idt[vec] = lo;
#endif
}

static void setup_descriptors(void)
{
	uword base = (uword)&tss, limit = sizeof(tss) - 1;
	memzero(&tss, sizeof(tss));
#ifdef __x86_64__
	tss.rsp0 = (uword)isr_stack_top;
#else
	tss.esp0 = (uword)isr_stack_top;
	tss.ss0 = SEL_KDATA;
#endif
	tss.iomap = sizeof(tss);  /* no I/O bitmap */
	gdt[SEL_TSS / 8] = (limit & 0xFFFF) | ((u64)(base & 0xFFFFFF) << 16) | ((u64)0x89 << 40) |
			   ((u64)((base >> 24) & 0xFF) << 56);
#ifdef __x86_64__
	gdt[SEL_TSS / 8 + 1] = (u64)base >> 32;
#endif
	load_tr();

	for (u32 v = 0; v < 32; v++) set_gate(v, isr_table[v], v == 3 ? 3 : 0);  /* INT3 from CPL3 */
	set_gate(VEC_DONE, isr_table[32], 3);
	struct { u16 limit; uword base; } __attribute__((packed)) idtr = { sizeof(idt) - 1, (uword)idt };
	__asm__ volatile("lidt %0" ::"m"(idtr));
}

/* ---- batch parsing ---------------------------------------------------------------- */

struct reader { const u8 *p, *end; u32 index; };

static u32 rd32(struct reader *r)
{
	if (r->end - r->p < 4) fail("C", r->index, "record-overrun");
	u32 v = r->p[0] | (u32)r->p[1] << 8 | (u32)r->p[2] << 16 | (u32)r->p[3] << 24;
	r->p += 4;
	return v;
}
static u64 rd64(struct reader *r)
{
	u64 lo = rd32(r);
	return lo | (u64)rd32(r) << 32;
}

static int in_range(u64 pa, u64 size, u64 lo, u64 hi) { return pa >= lo && pa + size <= hi && pa + size > pa; }

static u64 read_phys(u64 pa, u32 size)
{
	return size == 8 ? *(volatile u64 *)phys(pa) : *(volatile u32 *)phys(pa);
}

/* ---- main --------------------------------------------------------------------------- */

void kmain(void)
{
	const u8 *batch = phys(BATCH_ADDR);
	struct reader hr = { batch, batch + 32, 0xFFFFFFFFu };
	static const char magic[8] = "VMMUCASE";
	for (int i = 0; i < 8; i++)
		if (batch[i] != (u8)magic[i]) fail("HEADER", 0xFFFFFFFFu, "bad-magic");
	hr.p += 8;
	u32 version = rd32(&hr), mode = rd32(&hr), count = rd32(&hr), hsize = rd32(&hr);
	if (version != 1) fail("HEADER", 0xFFFFFFFFu, "bad-version");
	if (!KERNEL_MODES_OK(mode)) fail("HEADER", 0xFFFFFFFFu, "mode-not-supported-by-this-kernel");
	if (hsize < 32 || hsize > 4096) fail("HEADER", 0xFFFFFFFFu, "bad-header-size");

	u32 a, b, c, d;
	cpuid(7, 0, &a, &b, &c, &d);
	u32 c7ebx = b, c7ecx = c;
	int has_pks = (c7ecx >> 31) & 1;
	cpuid(0x80000008, 0, &a, &b, &c, &d);
	u32 maxphyaddr = a & 0xFF;

	/* Harness tables, code/data/user pages (paging may still be off). */
	u64 home_cr3, home_cr4;
	if (mode == 0) { build_tables_32bit(); home_cr3 = M0_HOME_PD; home_cr4 = 0; }
	else if (mode == 1) { build_tables_pae(); home_cr3 = M1_HOME_PDPT; home_cr4 = CR4_PAE; }
	else if (mode == 2) { build_tables_ia32e(); home_cr3 = M2_HOME_PML4; home_cr4 = CR4_PAE; }
	else { build_tables_ia32e(); home_cr3 = M2_HOME_PML5; home_cr4 = CR4_PAE | CR4_LA57; }
	memfill(phys(DATA_PAGE), 0xCC, 4096);
	memfill(phys(CODE_PAGE), 0xCC, 4096);  /* INT3 at every offset */
	memzero(phys(USER_STUB), 4096);
	memzero(phys(USER_STACK), 4096);
	for (u32 i = 0; i < (u32)(access_stub_end - access_stub); i++) ((u8 *)phys(USER_STUB))[i] = access_stub[i];

#ifdef __x86_64__
	load_cr3(home_cr3);  /* CR4 (PAE, LA57) was set at boot */
#else
	enable_paging((u32)home_cr3, (u32)home_cr4);
#endif
	setup_descriptors();
	u64 home_cr0 = read_cr0() | CR0_WP;
	home_cr4 = read_cr4();  /* exact harness CR4: PAE/LA57 only */

	puts_("VMMU-KERNEL 1 mode=");
	putdec(mode);
	puts_(" cases=");
	putdec(count);
	puts_(" cpuid7ecx=");
	puthex(c7ecx);
	puts_(" cpuid7ebx=");
	puthex(c7ebx);
	puts_(" maxphyaddr=");
	putdec(maxphyaddr);
	putc_('\n');

	const u8 *p = batch + hsize, *limit = phys(BATCH_LIMIT);
	for (u32 idx = 0; idx < count; idx++) {
		struct reader r = { p, p + 4, idx };
		u32 rsize = rd32(&r);
		if (rsize < 48 || (rsize & 7) || (u64)(limit - p) < rsize) fail("C", idx, "bad-record-size");
		r.end = p + rsize;
		u32 flags = rd32(&r), pkru = rd32(&r), pkrs = rd32(&r);
		u64 cr3 = rd64(&r), va = rd64(&r);

		/* 1. zero pages, then writes (harness CR3, supervisor, nothing else enabled) */
		u32 nzero = rd32(&r);
		for (u32 i = 0; i < nzero; i++) {
			u64 pa = rd64(&r);
			if ((pa & 0xFFF) || !in_range(pa, 4096, SCRATCH_BASE, SCRATCH_LIMIT)) fail("C", idx, "bad-zero-page");
			u64 *q = phys(pa);
			for (u32 j = 0; j < 512; j++) q[j] = 0;
		}
		u32 nwrite = rd32(&r);
		for (u32 i = 0; i < nwrite; i++) {
			u64 pa = rd64(&r), val = rd64(&r);
			u32 size = rd32(&r);
			rd32(&r);
			if ((size != 4 && size != 8) || (pa & (size - 1)) ||
			    !(in_range(pa, size, SCRATCH_BASE, SCRATCH_LIMIT) || in_range(pa, size, DATA_PAGE, DATA_PAGE + 4096)))
				fail("C", idx, "bad-write");
			if (size == 8) *(volatile u64 *)phys(pa) = val;
			else *(volatile u32 *)phys(pa) = (u32)val;
		}
		u32 nwatch = rd32(&r);
		const u8 *watches = r.p;
		for (u32 i = 0; i < nwatch; i++) {
			u64 pa = rd64(&r);
			u32 size = rd32(&r);
			rd32(&r);
			if ((size != 4 && size != 8) || (pa & (size - 1)) || !in_range(pa, size, 0, RAM_LIMIT))
				fail("C", idx, "bad-watch");
		}

		/* QEMU 7.2 does not raise #GP for a MOV to CR3 that sets bits
		 * 63:MAXPHYADDR in IA-32e mode (SDM: #GP(0)); it livelocks instead
		 * (observed: the vCPU spins on the MOV CR3 block until the timeout).
		 * Refuse such cases up front rather than lose the batch to a hang. */
		if (mode >= 2 && maxphyaddr < 64 && (cr3 >> maxphyaddr) != 0) fail("C", idx, "cr3-reserved-bits-hang-qemu");

		/* 2./3. load the case state and perform the access (run_case) */
		struct run run;
		memzero(&run, sizeof(run));
		run.cr3 = mode <= 1 ? (u32)cr3 : cr3;
		run.va = mode <= 1 ? (u32)va : va;
		run.cr0 = (flags & 0x001) ? home_cr0 : (home_cr0 & ~(u64)CR0_WP);
		run.cr4 = home_cr4;
		if (flags & 0x002) run.cr4 |= CR4_PSE;
		if (flags & 0x004) run.cr4 |= CR4_SMEP;
		if (flags & 0x008) run.cr4 |= CR4_SMAP;
		if (flags & 0x010) run.cr4 |= CR4_PKE;
		if (flags & 0x020) run.cr4 |= CR4_PKS;
		run.nxe = (flags >> 6) & 1;
		run.pkru = pkru;
		run.pkrs = pkrs;
		u32 kind = (flags >> 9) & 3;
		run.opts = (has_pks ? OPT_WRPKRS : 0) | ((flags & 0x100) ? OPT_CPL3 : 0) | ((flags & 0x080) ? OPT_AC : 0) |
			   (kind << OPT_KIND_SHIFT);
		run.home_cr0 = home_cr0;
		run.home_cr4 = home_cr4;
		run.home_cr3 = home_cr3;
		run_case(&run);

		/* 4. classify: VEC_DONE, or #BP right after the fetched INT3, means the
		 * access completed; anything else is the exception it raised. */
		u64 vamask = mode <= 1 ? 0xFFFFFFFFull : ~0ull;
		int completed = run.vec == VEC_DONE || (kind == 2 && run.vec == 3 && ((run.rip - 1) & vamask) == run.va);
		putc_('C');
		putc_(' ');
		putdec(idx);
		putc_(' ');
		if (completed) {
			puts_("- - -");
		} else {
			u32 v = (u32)run.vec;
			int has_err = v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21 || v == 29 || v == 30;
			putdec(v);
			putc_(' ');
			if (has_err) puthex(run.err & 0xFFFFFFFFu); else putc_('-');
			putc_(' ');
			if (v == 14) puthex(mode <= 1 ? (u32)run.cr2 : run.cr2); else putc_('-');
		}
		/* 5. watched entries, read back through the home tables */
		struct reader w = { watches, r.end, idx };
		for (u32 i = 0; i < nwatch; i++) {
			u64 pa = rd64(&w);
			u32 size = rd32(&w);
			rd32(&w);
			putc_(' ');
			puthex(read_phys(pa, size));
		}
		putc_('\n');
		p += rsize;
	}
	puts_("END ");
	putdec(count);
	putc_('\n');
	qemu_exit(EXIT_OK);
}
