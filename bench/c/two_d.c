/*
 * C reference for bench/two-d.bench.ts: the hardware's two-dimensional walk
 * (src/hw/two-dimensional-walk.ts) with nothing cached: the guest walker walks the guest's
 * tables through a nested frame source (src/hw/nested-frames.ts) that translates every guest
 * table frame with the EPT walker, then the final guest-physical address is translated with
 * the EPT walker too. 4-level guest on 4-level EPT: 24 memory references per walk.
 *
 * Both walkers are bench/c/walk.c's transcription of GuestWalker (translate +
 * commitAccessedDirty, format read at run time), included here with its memory interface
 * (GuestPhysical's frame_words / compare_exchange) replaced by a frame source that is either
 * host memory (the EPT walker's, as HostMemory is in the JS) or the nested frame source (the
 * guest walker's): the JS calls the same GuestWalker code with either kind of FrameSource.
 *
 * usage: two_d IMAGE GUESTWALKER WARMUP RUNS LIST   (prints JSON on stdout)
 * IMAGE: host memory + the EPT walker (bench/lib/image.ts); GUESTWALKER: the guest walker
 * (bench/lib/image.ts, writeWalkerConfig). WARMUP passes, then RUNS timed passes over LIST.
 */
/* Functions of vmmu.h and walk.c this program does not call (GuestPhysical, walk.c's main). */
#pragma GCC diagnostic ignored "-Wunused-function"
#include "vmmu.h"

typedef struct FrameSource FrameSource;
static uint32_t *fs_frame_words(FrameSource *s, uint64_t gfn);
static int fs_compare_exchange(FrameSource *s, uint64_t pa, int bytes, uint32_t exp_lo, uint32_t exp_hi,
                               uint32_t new_lo, uint32_t new_hi);

#define SEEN_MAX 8

/* HostMemory (nested == 0) or NestedFrameSource (nested == 1). */
struct FrameSource {
  int nested;
  uint64_t frame_base;
  HostMemory *host;
  /* NestedFrameSource */
  void *host_walker; /* GuestWalker * */
  void *walk;        /* Walk *: the last EPT walk ("nested") */
  uint32_t table_read, table_write, writable_bit;
  int failed;
  uint32_t refs;
  uint64_t seen_gfn[SEEN_MAX], seen_hfn[SEEN_MAX];
  uint8_t seen_writable[SEEN_MAX];
  int seen;
};

#define GuestPhysical FrameSource
#define gp_frame_words fs_frame_words
#define gp_compare_exchange fs_compare_exchange
#define main walk_c_main
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wincompatible-pointer-types" /* walk.c's main: not called */
#include "walk.c"
#pragma GCC diagnostic pop
#undef main
#undef GuestPhysical
#undef gp_frame_words
#undef gp_compare_exchange

#define X86_EFF_U 2u
#define EPT_EFF_W 2u
#define X86_EFF_W 1u

/* NestedFrameSource.remember */
static void fs_remember(FrameSource *s, uint64_t gfn, uint64_t hfn, uint32_t writable) {
  if (s->seen < SEEN_MAX) {
    s->seen_gfn[s->seen] = gfn;
    s->seen_hfn[s->seen] = hfn;
    s->seen_writable[s->seen++] = (uint8_t)writable;
  }
}

static uint32_t *fs_frame_words(FrameSource *s, uint64_t gfn) {
  if (!s->nested) {
    /* HostMemory.frameWords */
    uint32_t *words = hm_frame_words(s->host, (int64_t)gfn);
    s->frame_base = s->host->frame_base;
    return words;
  }
  /* NestedFrameSource.frameWords (no nested TLB) */
  uint64_t gpa = gfn * 4096;
  Walk *w = s->walk;
  int ok = walk(s->host_walker, (uint32_t)(gpa >> 32), (uint32_t)gpa, s->table_read, w);
  s->refs += w->depth;
  if (!ok) {
    s->failed = 1;
    return NULL;
  }
  uint64_t hfn = w->address / 4096;
  uint32_t writable = w->effective & s->writable_bit;
  fs_remember(s, gfn, hfn, writable);
  uint32_t *words = hm_frame_words(s->host, (int64_t)hfn);
  s->frame_base = s->host->frame_base;
  return words;
}

static int host_compare_exchange(HostMemory *h, uint64_t pa, int bytes, uint32_t exp_lo, uint32_t exp_hi,
                                 uint32_t new_lo, uint32_t new_hi) {
  uint32_t *words = hm_frame_words(h, (int64_t)(pa / 4096));
  if (!words) return CMPXCHG_NOT_RAM;
  return compare_exchange_words(words, h->frame_base, pa % 4096, bytes, exp_lo, exp_hi, new_lo, new_hi);
}

static int fs_compare_exchange(FrameSource *s, uint64_t pa, int bytes, uint32_t exp_lo, uint32_t exp_hi,
                               uint32_t new_lo, uint32_t new_hi) {
  if (!s->nested) return host_compare_exchange(s->host, pa, bytes, exp_lo, exp_hi, new_lo, new_hi);
  uint64_t gfn = pa / 4096;
  for (int i = 0; i < s->seen; i++)
    if (s->seen_gfn[i] == gfn && s->seen_writable[i] != 0)
      return host_compare_exchange(s->host, s->seen_hfn[i] * 4096 + pa % 4096, bytes, exp_lo, exp_hi, new_lo,
                                   new_hi);
  Walk *w = s->walk;
  int ok = walk(s->host_walker, (uint32_t)(pa >> 32), (uint32_t)pa, s->table_write, w);
  s->refs += w->depth;
  if (!ok) {
    s->failed = 1;
    return CMPXCHG_NOT_RAM;
  }
  return host_compare_exchange(s->host, w->address, bytes, exp_lo, exp_hi, new_lo, new_hi);
}

/* TwoDimensionalWalk */
enum { TWO_D_OK, TWO_D_GUEST_FAULT, TWO_D_HOST_FAULT };

typedef struct {
  GuestWalker *guest_walker;
  FrameSource *frames;
  Walk guest;
  Walk *host; /* = frames->walk */
  uint64_t guest_physical, host_physical;
  int page_shift, host_fault_on_table;
  uint32_t refs;
  uint64_t walks, total_refs, completed, completed_refs;
} TwoD;

static int host_fault(TwoD *t, int on_table, uint32_t guest_refs) {
  t->host_fault_on_table = on_table;
  t->refs = guest_refs + t->frames->refs;
  t->total_refs += t->refs;
  return TWO_D_HOST_FAULT;
}

static int two_d_walk(TwoD *t, uint32_t va_hi, uint32_t va_lo, uint32_t access) {
  FrameSource *frames = t->frames;
  frames->failed = 0;
  frames->refs = 0;
  frames->seen = 0;
  t->walks++;
  Walk *g = &t->guest;
  int ok = walk(t->guest_walker, va_hi, va_lo, access, g);
  uint32_t guest_refs = g->depth - (g->register_mask != 0 ? 1 : 0);
  if (frames->failed) return host_fault(t, 1, guest_refs);
  if (!ok) {
    t->refs = guest_refs + frames->refs;
    t->total_refs += t->refs;
    return TWO_D_GUEST_FAULT;
  }
  uint64_t gpa = g->address;
  int guest_user = (g->effective & X86_EFF_U) != 0;
  int shift = g->page_shift;
  GuestWalker *hw = frames->host_walker;
  int ept = hw->format->kind == FORMAT_EPT;
  uint32_t final_access = (access & (ACCESS_WRITE | ACCESS_FETCH)) |
                          (ept ? ACCESS_LINEAR_VALID | (guest_user ? ACCESS_USER : 0) : ACCESS_USER);
  Walk *h = t->host;
  ok = walk(hw, (uint32_t)(gpa >> 32), (uint32_t)gpa, final_access, h);
  frames->refs += h->depth;
  if (!ok) return host_fault(t, 0, guest_refs);
  t->guest_physical = gpa;
  t->host_physical = h->address;
  t->page_shift = shift < h->page_shift ? shift : h->page_shift;
  t->refs = guest_refs + frames->refs;
  t->total_refs += t->refs;
  t->completed++;
  t->completed_refs += t->refs;
  return TWO_D_OK;
}

/* The checksum matches bench/two-d.bench.ts: sum of (host physical mod 2^32) + references. */
static PassResult pass_two_d(TwoD *t, const AccessList *l) {
  PassResult r = {0, 0};
  for (uint64_t i = 0; i < l->count; i++) {
    if (two_d_walk(t, l->va[2 * i + 1], l->va[2 * i], l->access[i]) != TWO_D_OK) r.faults++;
    r.sum += (uint32_t)t->host_physical + t->refs;
  }
  return r;
}

int main(int argc, char **argv) {
  if (argc != 6) die("usage: two_d IMAGE GUESTWALKER WARMUP RUNS LIST");
  static Machine m;
  static GuestWalker host_wk, guest_wk;
  static PagingFormat host_f, guest_f;
  static FrameSource host_src, nested_src;
  static Walk nested_walk;
  static TwoD t;
  Reader r = read_file(argv[1]);
  load_machine(&r, &m);
  host_src.nested = 0;
  host_src.host = &m.host;
  load_walker(&r, &host_wk, &host_f, &host_src);
  Reader r2 = read_file(argv[2]);
  expect_tag(&r2, "VMMBWLK1");
  load_walker(&r2, &guest_wk, &guest_f, &nested_src);
  int ept = host_f.kind == FORMAT_EPT;
  int ad = host_f.accessed_mask != 0;
  nested_src.nested = 1;
  nested_src.host = &m.host;
  nested_src.host_walker = &host_wk;
  nested_src.walk = &nested_walk;
  nested_src.table_read = ept ? ACCESS_GUEST_TABLE | ACCESS_LINEAR_VALID | (ad ? ACCESS_WRITE : 0)
                              : ACCESS_GUEST_TABLE | ACCESS_USER | ACCESS_WRITE;
  nested_src.table_write = nested_src.table_read | ACCESS_WRITE;
  nested_src.writable_bit = ept ? EPT_EFF_W : X86_EFF_W;
  t.guest_walker = &guest_wk;
  t.frames = &nested_src;
  t.host = &nested_walk;
  int warmup = atoi(argv[3]);
  int runs = atoi(argv[4]);
  AccessList l = load_access_list(argv[5]);
  for (int i = 0; i < warmup; i++) pass_two_d(&t, &l);
  double *ms = calloc((size_t)runs, sizeof(double)), *cpu = calloc((size_t)runs, sizeof(double));
  PassResult *res = calloc((size_t)runs, sizeof(PassResult));
  for (int i = 0; i < runs; i++) {
    double t0 = now_ms(), c0 = cpu_ms();
    res[i] = pass_two_d(&t, &l);
    cpu[i] = cpu_ms() - c0;
    ms[i] = now_ms() - t0;
  }
  printf("{");
  print_pass_list("walk", ms, cpu, res, runs);
  printf(",\"completed\":%llu,\"completedRefs\":%llu,\"retries\":%llu,\"memHash\":%u}\n",
         (unsigned long long)t.completed, (unsigned long long)t.completed_refs,
         (unsigned long long)(host_wk.retries + guest_wk.retries), hash_host_memory(&m.host));
  return 0;
}
