/*
 * C reference for bench/walk.bench.ts: the same guest page-table walk as src/walk/walker.ts
 * (GuestWalker.translate + commitAccessedDirty), line for line, over the same memory model
 * (vmmu.h), driven by the same data: the format is read from the image at run time, not
 * compiled in, so the C reads the same descriptor fields and performs the same checks
 * (canonical address, presence, reserved bits per level, leaf rules, permission table,
 * protection keys when enabled) and fills the same record.
 *
 * With -DWALK_FAST_PATH (the "walk-fast" executable) it also transcribes the structure of the
 * JS fast path (one loop over the levels, the frame-cache probe, the A/D-clean test; the
 * generic GuestWalker.translateFast it was transcribed from has since been replaced by the
 * fast path compiled per format, src/walk/specialize.ts, which does the same work), so the
 * JS can be compared with C of the same structure as well as with the reference as it was.
 *
 * usage: walk IMAGE WARMUP RUNS LIST...   (prints JSON on stdout)
 * Per list: one cold `walk` pass (sets accessed/dirty flags), WARMUP passes of each variant,
 * then RUNS timed passes of `walk` (translate + A/D commit) and `translate` (pure), alternating.
 */
#include "vmmu.h"

#define ACCESS_WRITE (1u << 0)
#define ACCESS_FETCH (1u << 1)
#define ACCESS_USER (1u << 2)
#define ACCESS_IMPLICIT (1u << 3)
#define ACCESS_GUEST_TABLE (1u << 5)
#define ACCESS_LINEAR_VALID (1u << 6)
#define ACCESS_PERM_INDEX_MASK 0x1fu

#define FORMAT_EPT 1
#define EPT_XU (1u << 10)
#define EPTQ_READ (1u << 0)
#define EPTQ_WRITE (1u << 1)
#define EPTQ_FETCH (1u << 2)
#define EPTQ_LINEAR_VALID (1u << 7)
#define EPTQ_LINEAR_TRANSLATION (1u << 8)

#define PFEC_P (1u << 0)
#define PFEC_W (1u << 1)
#define PFEC_U (1u << 2)
#define PFEC_RSVD (1u << 3)
#define PFEC_PK (1u << 5)

enum { FAULT_NONE, FAULT_PAGE, FAULT_GP, FAULT_EPT_VIOLATION, FAULT_EPT_MISCONFIG };
enum {
  REASON_NONE,
  REASON_NOT_PRESENT,
  REASON_RESERVED,
  REASON_PROTECTION,
  REASON_PKEY,
  REASON_NON_CANONICAL,
  REASON_TABLE_NOT_RAM,
  REASON_BAD_EPT_BITS
};

#define MAX_LEVELS 5
#define MAX_RETRIES 16

typedef struct {
  uint32_t kind, levels, entry_bytes, root_is_pdpte_registers, address_bits, large_levels;
  uint32_t present_mask, perm_mask, xd_mask_hi, accessed_mask, dirty_mask, pse36, mbec;
  int32_t shifts[6], index_masks[6];
  uint32_t rsvd_lo[12], rsvd_hi[12];
  uint8_t ept_bad_bits[64];
} PagingFormat;

typedef struct {
  GuestPhysical *memory;
  const PagingFormat *format;
  uint16_t perm_fault[32];
  uint32_t fetch_error_bit;
  int pke, pks;
  uint32_t pkru, pkrs;
  int wp;
  uint64_t root_gfn, pdpt_addr;
  uint32_t pdpte[8];
  uint64_t retries;
} GuestWalker;

typedef struct {
  uint32_t va_hi, va_lo, access;
  uint32_t depth;
  int8_t level[MAX_LEVELS];
  uint64_t entry_addr[MAX_LEVELS];
  uint32_t lo[MAX_LEVELS], hi[MAX_LEVELS], new_lo[MAX_LEVELS], new_hi[MAX_LEVELS];
  uint32_t register_mask, missing_mask;
  uint32_t accessed_count;
  int set_dirty;
  int fault, reason;
  uint32_t error_code;
  int fault_level;
  uint64_t address;
  int page_shift;
  uint32_t effective, pkey;
} Walk;

static int fail(GuestWalker *wk, Walk *w, uint32_t depth, int kind, int reason, int level, uint32_t perm) {
  w->fault = kind;
  w->reason = reason;
  w->fault_level = level;
  w->depth = depth;
  w->accessed_count = wk->format->accessed_mask == 0 || depth == 0 ? 0 : depth - 1;
  w->address = 0;
  w->page_shift = 0;
  uint32_t a = w->access;
  if (kind == FAULT_PAGE) {
    uint32_t ec = (a & ACCESS_WRITE ? PFEC_W : 0) |
                  ((a & (ACCESS_USER | ACCESS_IMPLICIT)) == ACCESS_USER ? PFEC_U : 0);
    if (a & ACCESS_FETCH) ec |= wk->fetch_error_bit;
    if (reason == REASON_RESERVED) ec |= PFEC_P | PFEC_RSVD;
    else if (reason == REASON_PROTECTION) ec |= PFEC_P;
    else if (reason == REASON_PKEY) ec |= PFEC_P | PFEC_PK;
    w->error_code = ec;
  } else if (kind == FAULT_EPT_VIOLATION) {
    uint32_t q;
    if (a & ACCESS_FETCH) q = EPTQ_FETCH;
    else if (a & ACCESS_WRITE) q = a & ACCESS_GUEST_TABLE ? EPTQ_WRITE | EPTQ_READ : EPTQ_WRITE;
    else q = EPTQ_READ;
    if (reason == REASON_PROTECTION) q |= ((perm & 7) << 3) | (wk->format->mbec ? ((perm >> 10) & 1) << 6 : 0);
    if (a & ACCESS_LINEAR_VALID) q |= EPTQ_LINEAR_VALID | (a & ACCESS_GUEST_TABLE ? 0 : EPTQ_LINEAR_TRANSLATION);
    w->error_code = q;
  } else
    w->error_code = 0;
  return 0;
}

/* GuestWalker.translateGeneral */
static int translate_general(GuestWalker *wk, uint32_t va_hi, uint32_t va_lo, uint32_t access, Walk *w) {
  const PagingFormat *f = wk->format;
  GuestPhysical *mem = wk->memory;
  w->va_hi = va_hi;
  w->va_lo = va_lo;
  w->access = access;
  w->register_mask = 0;
  w->missing_mask = 0;
  w->set_dirty = 0;

  uint32_t bits_above = 64 - f->address_bits;
  if (bits_above < 32 && f->kind != FORMAT_EPT &&
      ((int32_t)(va_hi << bits_above) >> bits_above) != (int32_t)va_hi) {
    w->depth = 0;
    return fail(wk, w, 0, FAULT_GP, REASON_NON_CANONICAL, 0, 0);
  }

  int level = (int)f->levels;
  uint64_t table_gfn = wk->root_gfn;
  uint32_t perm = f->perm_mask;
  uint32_t xd = 0;
  uint32_t d = 0;
  uint32_t lo = 0, hi = 0;
  int wide = f->entry_bytes == 8;

  if (f->root_is_pdpte_registers) {
    uint32_t i = va_lo >> 30;
    lo = wk->pdpte[i * 2];
    hi = wk->pdpte[i * 2 + 1];
    w->level[0] = 3;
    w->entry_addr[0] = wk->pdpt_addr + i * 8;
    w->lo[0] = w->new_lo[0] = lo;
    w->hi[0] = w->new_hi[0] = hi;
    w->register_mask = 1;
    d = 1;
    if ((lo & 1) == 0) return fail(wk, w, d, FAULT_PAGE, REASON_NOT_PRESENT, 3, 0);
    table_gfn = (uint64_t)(hi & 0xfffff) * 0x100000 + (lo >> 12);
    level = 2;
  }

  for (;;) {
    int32_t shift = f->shifts[level];
    uint32_t index = (shift >= 32 ? va_hi >> (shift - 32) : (va_lo >> shift) | (va_hi << (32 - shift))) &
                     (uint32_t)f->index_masks[level];
    uint32_t *words = gp_frame_words(mem, table_gfn);
    w->level[d] = (int8_t)level;
    w->entry_addr[d] = table_gfn * 4096 + (uint64_t)index * f->entry_bytes;
    if (words == NULL) {
      w->lo[d] = w->hi[d] = w->new_lo[d] = w->new_hi[d] = 0;
      w->missing_mask |= 1u << d;
      return fail(wk, w, d + 1, f->kind == FORMAT_EPT ? FAULT_EPT_VIOLATION : FAULT_PAGE, REASON_TABLE_NOT_RAM,
                  level, 0);
    }
    uint64_t base = mem->frame_base;
    if (wide) {
      lo = words[base + index * 2];
      hi = words[base + index * 2 + 1];
    } else {
      lo = words[base + index];
      hi = 0;
    }
    w->lo[d] = w->new_lo[d] = lo;
    w->hi[d] = w->new_hi[d] = hi;
    d++;

    if ((lo & f->present_mask) == 0)
      return fail(wk, w, d, f->kind == FORMAT_EPT ? FAULT_EPT_VIOLATION : FAULT_PAGE, REASON_NOT_PRESENT, level,
                  0);
    int leaf = level == 1 || ((f->large_levels >> level) & (lo >> 7) & 1) != 0;
    int k = level * 2 + (leaf ? 1 : 0);
    if ((lo & f->rsvd_lo[k]) != 0 || (hi & f->rsvd_hi[k]) != 0)
      return fail(wk, w, d, f->kind == FORMAT_EPT ? FAULT_EPT_MISCONFIG : FAULT_PAGE, REASON_RESERVED, level, 0);
    if (f->kind == FORMAT_EPT) {
      uint32_t xwr = (lo & 7) | (f->mbec && (lo & EPT_XU) != 0 ? 4 : 0);
      if (f->ept_bad_bits[leaf ? (lo & 0x38) | xwr : xwr] != 0)
        return fail(wk, w, d, FAULT_EPT_MISCONFIG, REASON_BAD_EPT_BITS, level, 0);
    }
    perm &= lo;
    xd |= hi;
    if (leaf) break;
    table_gfn = (uint64_t)(hi & 0xfffff) * 0x100000 + (lo >> 12);
    level--;
  }

  int page_shift = f->shifts[level];
  uint32_t offset_mask = (1u << page_shift) - 1;
  uint32_t frame_hi = f->pse36 && level == 2 ? (lo >> 13) & 0xff : hi & 0xfffff;
  w->address = (uint64_t)frame_hi * 0x100000000ull + (lo & ~offset_mask & 0xfffff000u) + (va_lo & offset_mask);
  w->page_shift = page_shift;

  uint32_t eff;
  if (f->kind == FORMAT_EPT) eff = (perm & 7) | ((perm >> 7) & 8);
  else eff = ((perm >> 1) & 3) | ((xd & f->xd_mask_hi) == 0 ? 4 : 0);
  w->effective = eff;
  int faulted = ((wk->perm_fault[access & ACCESS_PERM_INDEX_MASK] >> eff) & 1) != 0;

  int key_fault = 0;
  w->pkey = (hi >> 27) & 15;
  if ((wk->pke || wk->pks) && (access & ACCESS_FETCH) == 0) {
    int user_page = (eff & 2) != 0;
    int user_access = (access & (ACCESS_USER | ACCESS_IMPLICIT)) == ACCESS_USER;
    uint32_t reg = user_page ? (wk->pke ? wk->pkru : 0) : wk->pks && !user_access ? wk->pkrs : 0;
    uint32_t rights = reg >> (w->pkey * 2);
    key_fault = (rights & 1) != 0 || ((rights & 2) != 0 && (access & ACCESS_WRITE) != 0 && (user_access || wk->wp));
    faulted = faulted || key_fault;
  }
  if (faulted) {
    int kind = f->kind == FORMAT_EPT ? FAULT_EPT_VIOLATION : FAULT_PAGE;
    return fail(wk, w, d, kind, key_fault ? REASON_PKEY : REASON_PROTECTION, level, perm);
  }

  w->fault = FAULT_NONE;
  w->reason = 0;
  w->error_code = 0;
  w->fault_level = 0;
  w->depth = d;
  w->accessed_count = f->accessed_mask == 0 ? 0 : d;
  w->set_dirty = (access & ACCESS_WRITE) != 0;
  return 1;
}

#ifdef WALK_FAST_PATH
/*
 * The fast path (transcribed from the generic GuestWalker.translateFast, now compiled per
 * format in the JS) and its eligibility test (fastEligible), transcribed like the
 * rest; compiled in with -DWALK_FAST_PATH (the "walk-fast" executable), so the benchmark
 * measures the C both as it was (the general walk only) and with the same restructuring as
 * the JS. Returns 0 (not a plain success: walk again with translate), 1 (success, nothing
 * for the A/D commit to write) or 2 (success, commit needed).
 */
static int fast_eligible(const GuestWalker *wk) {
  const PagingFormat *f = wk->format;
  if (f->kind != 0 || f->entry_bytes != 8 || f->root_is_pdpte_registers || f->pse36 ||
      (f->levels != 4 && f->levels != 5) || f->address_bits != (f->levels == 4 ? 48u : 57u) ||
      f->present_mask != 1 || f->perm_mask != 6 || f->accessed_mask != 0x20 || f->dirty_mask != 0x40 || wk->pke ||
      wk->pks)
    return 0;
  for (uint32_t l = 1; l <= f->levels; l++)
    if (f->shifts[l] != (int32_t)(l * 9 + 3) || f->index_masks[l] != 0x1ff) return 0;
  return 1;
}

/* GuestPhysical.currentFrameCache */
static void gp_current_frame_cache(GuestPhysical *gp) {
  if (gp->cache_generation != (int64_t)gp->memslots->generation || gp->cache_epoch != gp->host_space->epoch) {
    memset(gp->cache_gfn, 0xff, sizeof gp->cache_gfn);
    memset(gp->cache_words, 0, sizeof gp->cache_words);
    gp->cache_generation = (int64_t)gp->memslots->generation;
    gp->cache_epoch = gp->host_space->epoch;
  }
}

static int wk_fast;
static int32_t wk_rsvd[24];

static int translate_fast(GuestWalker *wk, uint32_t va_hi, uint32_t va_lo, uint32_t access, Walk *w) {
  const PagingFormat *f = wk->format;
  GuestPhysical *mem = wk->memory;
  uint32_t bits_above = 64 - f->address_bits;
  if (((int32_t)(va_hi << bits_above) >> bits_above) != (int32_t)va_hi) return 0;
  gp_current_frame_cache(mem);
  uint32_t large = f->large_levels;
  int level = (int)f->levels;
  uint64_t table_gfn = wk->root_gfn;
  uint32_t all = 0xffffffffu, xd = 0, d = 0, lo = 0, hi = 0;
  for (;;) {
    int shift = level * 9 + 3;
    uint32_t index = (level >= 4 ? va_hi >> (shift - 32) : (va_lo >> shift) | (va_hi << (32 - shift))) & 0x1ff;
    uint64_t slot = table_gfn & FRAME_CACHE_MASK;
    uint32_t *words;
    uint64_t at;
    if (mem->cache_gfn[slot] == table_gfn) {
      words = mem->cache_words[slot];
      at = mem->cache_base[slot] + index * 2;
    } else {
      words = gp_frame_words(mem, table_gfn);
      if (words == NULL) return 0;
      at = mem->frame_base + index * 2;
    }
    lo = words[at];
    hi = words[at + 1];
    w->level[d] = (int8_t)level;
    w->entry_addr[d] = table_gfn * 4096 + (uint64_t)index * 8;
    w->lo[d] = w->new_lo[d] = lo;
    w->hi[d] = w->new_hi[d] = hi;
    d++;
    if ((lo & 1) == 0) return 0;
    int leaf = level == 1 || ((large >> level) & (lo >> 7) & 1) != 0;
    int k = level * 4 + (leaf ? 2 : 0);
    if ((lo & (uint32_t)wk_rsvd[k]) != 0 || (hi & (uint32_t)wk_rsvd[k + 1]) != 0) return 0;
    all &= lo;
    xd |= hi;
    if (leaf) break;
    table_gfn = (uint64_t)(hi & 0xfffff) * 0x100000 + (lo >> 12);
    level--;
  }
  uint32_t eff = ((all >> 1) & 3) | ((xd & f->xd_mask_hi) == 0 ? 4 : 0);
  if (((wk->perm_fault[access & 0x1f] >> eff) & 1) != 0) return 0;
  int page_shift = level * 9 + 3;
  uint32_t offset_mask = (1u << page_shift) - 1;
  int write = (access & 1) != 0;
  w->va_hi = va_hi;
  w->va_lo = va_lo;
  w->access = access;
  w->register_mask = 0;
  w->missing_mask = 0;
  w->address = (uint64_t)(hi & 0xfffff) * 0x100000000ull + (lo & ~offset_mask & 0xfffff000u) + (va_lo & offset_mask);
  w->page_shift = page_shift;
  w->effective = eff;
  w->pkey = (hi >> 27) & 15;
  w->fault = FAULT_NONE;
  w->reason = 0;
  w->error_code = 0;
  w->fault_level = 0;
  w->depth = d;
  w->accessed_count = d;
  w->set_dirty = write;
  return (all & 0x20) != 0 && (!write || (lo & 0x40) != 0) ? 1 : 2;
}
#endif

/* GuestWalker.translate */
static int translate(GuestWalker *wk, uint32_t va_hi, uint32_t va_lo, uint32_t access, Walk *w) {
#ifdef WALK_FAST_PATH
  if (wk_fast && translate_fast(wk, va_hi, va_lo, access, w) != 0) return 1;
#endif
  return translate_general(wk, va_hi, va_lo, access, w);
}

/* GuestWalker.commitAccessedDirty */
static int commit_accessed_dirty(GuestWalker *wk, Walk *w) {
  const PagingFormat *f = wk->format;
  uint32_t a = f->accessed_mask;
  uint32_t leaf = w->depth - 1;
  for (uint32_t i = 0; i < w->accessed_count; i++) {
    if ((w->register_mask >> i) & 1) continue;
    uint32_t lo = w->lo[i];
    uint32_t next = lo | a | (i == leaf && w->set_dirty ? f->dirty_mask : 0);
    if (next == lo) continue;
    int r = gp_compare_exchange(wk->memory, w->entry_addr[i], (int)f->entry_bytes, lo, w->hi[i], next, w->hi[i]);
    if (r == CMPXCHG_CHANGED) return 0;
    if (r == 0) w->new_lo[i] = next;
  }
  return 1;
}

/* GuestWalker.walk */
static int walk(GuestWalker *wk, uint32_t va_hi, uint32_t va_lo, uint32_t access, Walk *w) {
  int attempt = 0;
#ifdef WALK_FAST_PATH
  if (wk_fast) {
    int r = translate_fast(wk, va_hi, va_lo, access, w);
    if (r == 1) return 1;
    if (r == 2) {
      if (commit_accessed_dirty(wk, w)) return 1;
      wk->retries++;
      attempt = 1;
    }
  }
#endif
  for (;; attempt++) {
    int ok = attempt == 0 ? translate_general(wk, va_hi, va_lo, access, w) : translate(wk, va_hi, va_lo, access, w);
    if (w->accessed_count == 0 || commit_accessed_dirty(wk, w) || attempt == MAX_RETRIES) return ok;
    wk->retries++;
  }
}

typedef struct {
  uint32_t sum;
  uint64_t faults;
} PassResult;

/* The checksum matches bench/walk.bench.ts: sum of (address mod 2^32) + leaf entry low half. */
static PassResult pass_walk(GuestWalker *wk, Walk *w, const AccessList *l) {
  PassResult r = {0, 0};
  for (uint64_t i = 0; i < l->count; i++) {
    if (!walk(wk, l->va[2 * i + 1], l->va[2 * i], l->access[i], w)) r.faults++;
    r.sum += (uint32_t)w->address + w->lo[w->depth - 1];
  }
  return r;
}

static PassResult pass_translate(GuestWalker *wk, Walk *w, const AccessList *l) {
  PassResult r = {0, 0};
  for (uint64_t i = 0; i < l->count; i++) {
    if (!translate(wk, l->va[2 * i + 1], l->va[2 * i], l->access[i], w)) r.faults++;
    r.sum += (uint32_t)w->address + w->lo[w->depth - 1];
  }
  return r;
}

static void load_walker(Reader *r, GuestWalker *wk, PagingFormat *f, GuestPhysical *gp) {
  f->kind = (uint32_t)rd_u64(r);
  f->levels = (uint32_t)rd_u64(r);
  f->entry_bytes = (uint32_t)rd_u64(r);
  f->root_is_pdpte_registers = (uint32_t)rd_u64(r);
  f->address_bits = (uint32_t)rd_u64(r);
  f->large_levels = (uint32_t)rd_u64(r);
  f->present_mask = (uint32_t)rd_u64(r);
  f->perm_mask = (uint32_t)rd_u64(r);
  f->xd_mask_hi = (uint32_t)rd_u64(r);
  f->accessed_mask = (uint32_t)rd_u64(r);
  f->dirty_mask = (uint32_t)rd_u64(r);
  f->pse36 = (uint32_t)rd_u64(r);
  f->mbec = (uint32_t)rd_u64(r);
  for (int i = 0; i < 6; i++) f->shifts[i] = (int32_t)rd_u64(r);
  for (int i = 0; i < 6; i++) f->index_masks[i] = (int32_t)rd_u64(r);
  for (int i = 0; i < 12; i++) f->rsvd_lo[i] = (uint32_t)rd_u64(r);
  for (int i = 0; i < 12; i++) f->rsvd_hi[i] = (uint32_t)rd_u64(r);
  for (int i = 0; i < 64; i++) f->ept_bad_bits[i] = (uint8_t)rd_u64(r);
  wk->memory = gp;
  wk->format = f;
  for (int i = 0; i < 32; i++) wk->perm_fault[i] = (uint16_t)rd_u64(r);
  wk->fetch_error_bit = (uint32_t)rd_u64(r);
  wk->pke = (int)rd_u64(r);
  wk->pks = (int)rd_u64(r);
  wk->pkru = (uint32_t)rd_u64(r);
  wk->pkrs = (uint32_t)rd_u64(r);
  wk->wp = (int)rd_u64(r);
  wk->root_gfn = rd_u64(r);
  wk->pdpt_addr = rd_u64(r);
  for (int i = 0; i < 8; i++) wk->pdpte[i] = (uint32_t)rd_u64(r);
  wk->retries = 0;
#ifdef WALK_FAST_PATH
  wk_fast = fast_eligible(wk);
  for (int k = 0; k < 12; k++) {
    wk_rsvd[k * 2] = (int32_t)f->rsvd_lo[k];
    wk_rsvd[k * 2 + 1] = (int32_t)f->rsvd_hi[k];
  }
#endif
}

static void print_pass_list(const char *name, const double *ms, const double *cpu, const PassResult *res, int n) {
  printf("\"%s\":{\"ms\":[", name);
  for (int i = 0; i < n; i++) printf("%s%.4f", i ? "," : "", ms[i]);
  printf("],\"cpuMs\":[");
  for (int i = 0; i < n; i++) printf("%s%.4f", i ? "," : "", cpu[i]);
  printf("],\"sums\":[");
  for (int i = 0; i < n; i++) printf("%s%u", i ? "," : "", res[i].sum);
  printf("],\"faults\":%llu}", (unsigned long long)(n ? res[0].faults : 0));
}

int main(int argc, char **argv) {
  if (argc < 5) die("usage: walk IMAGE WARMUP RUNS LIST...");
  static Machine m;
  static GuestWalker wk;
  static PagingFormat f;
  static Walk w;
  Reader r = read_file(argv[1]);
  load_machine(&r, &m);
  load_walker(&r, &wk, &f, &m.physical);
  int warmup = atoi(argv[2]);
  int runs = atoi(argv[3]);
  double *ms_w = calloc((size_t)runs, sizeof(double)), *ms_t = calloc((size_t)runs, sizeof(double));
  double *cpu_w = calloc((size_t)runs, sizeof(double)), *cpu_t = calloc((size_t)runs, sizeof(double));
  PassResult *res_w = calloc((size_t)runs, sizeof(PassResult)), *res_t = calloc((size_t)runs, sizeof(PassResult));

  printf("{\"lists\":[");
  for (int li = 4; li < argc; li++) {
    AccessList l = load_access_list(argv[li]);
    double t0 = now_ms();
    PassResult cold = pass_walk(&wk, &w, &l);
    double cold_ms = now_ms() - t0;
    for (int i = 0; i < warmup; i++) {
      pass_walk(&wk, &w, &l);
      pass_translate(&wk, &w, &l);
    }
    for (int i = 0; i < runs; i++) {
      t0 = now_ms();
      double c0 = cpu_ms();
      res_w[i] = pass_walk(&wk, &w, &l);
      cpu_w[i] = cpu_ms() - c0;
      ms_w[i] = now_ms() - t0;
      t0 = now_ms();
      c0 = cpu_ms();
      res_t[i] = pass_translate(&wk, &w, &l);
      cpu_t[i] = cpu_ms() - c0;
      ms_t[i] = now_ms() - t0;
    }
    printf("%s{\"count\":%llu,\"cold\":{\"ms\":%.4f,\"sum\":%u,\"faults\":%llu},", li > 4 ? "," : "",
           (unsigned long long)l.count, cold_ms, cold.sum, (unsigned long long)cold.faults);
    print_pass_list("walk", ms_w, cpu_w, res_w, runs);
    printf(",");
    print_pass_list("translate", ms_t, cpu_t, res_t, runs);
    printf("}");
  }
  printf("],\"retries\":%llu,\"memHash\":%u}\n", (unsigned long long)wk.retries, hash_host_memory(&m.host));
  return 0;
}
