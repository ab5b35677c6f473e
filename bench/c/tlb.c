/*
 * C reference for bench/tlb.bench.ts: TLB-hit accesses, i.e. Vcpu.read32 / Vcpu.write32
 * (src/vm/vcpu.ts) when the access hits: the alignment check, the access counter, the
 * set-associative lookup of Tlb.lookupFrame (src/hw/tlb.ts) in its slot layout (per slot,
 * the interleaved words vpn, space, tag, deny word, frame number; frame and stamp as a
 * second interleaved array) with the same tag compares (page number low half, space = EPT
 * tag|VPID, tag = V|G|PCID|page number high bits, global entries matching any PCID), the
 * rights check through the entry's deny word, the LRU stamp and per-size hit counter, then
 * the load (or store) through HostMemory.frameWords (vmmu.h) with the frame number. The
 * TLB's state (entries, context) is the JS TLB's after its warm-up (bench/lib/tlb-image.ts);
 * host memory is the JS guest's.
 *
 * usage: tlb IMAGE TLBIMAGE WARMUP RUNS READLIST WRITELIST   (prints JSON on stdout)
 * WARMUP passes of each, then RUNS timed passes of read32 over READLIST and write32 over
 * WRITELIST (value = index), alternating.
 */
#include "vmmu.h"

#define TLB_MISS (-1)
#define TLB_HIGH_FRAME (-2)
#define VA_HI_MASK 0x1ffffffu
#define TAG_VALID (1u << 26)
#define TAG_GLOBAL (1u << 25)
#define TAG_PCID_MASK (0xfffu << 13)
#define E_STRIDE 8
#define E_VPN 0
#define E_SPACE 1
#define E_TAG 2
#define E_DENY 3
#define E_FRAME 4
#define E_TO_F 2
#define F_STRIDE 2
#define F_STAMP 1

static const uint32_t SHIFTS[3] = {12, 21, 30};

typedef struct {
  uint64_t capacity;
  uint32_t z_base[3], z_ways[3], z_set_mask[3];
  uint32_t ways4k, set_mask4k;
  int lru;
  uint32_t cur_space, cur_tag;
  uint64_t clock;
  uint32_t *ent; /* E_STRIDE words per slot: vpn, space, tag, deny word, frame number (or -1) */
  uint64_t *fs;  /* F_STRIDE per slot: frame (physical base), stamp */
  uint64_t hits[3], misses, rights_misses;
} Tlb;

/* Tlb.lookupFrameLarge: the 2 MiB and 1 GiB arrays. */
static int32_t tlb_lookup_frame_large(Tlb *t, uint32_t h, uint32_t va_lo, uint32_t access) {
  const uint32_t *e = t->ent;
  uint32_t space = t->cur_space;
  uint32_t ctx_tag = t->cur_tag;
  for (int z = 1; z < 3; z++) {
    uint32_t ways = t->z_ways[z];
    if (ways == 0) continue;
    uint32_t shift = SHIFTS[z];
    uint32_t lo = (va_lo >> shift) | (h << (32 - shift));
    uint32_t hi = h >> shift;
    uint32_t want = hi | ctx_tag;
    uint32_t want_global = hi | TAG_VALID | TAG_GLOBAL;
    uint32_t i = (t->z_base[z] + (lo & t->z_set_mask[z]) * ways) * E_STRIDE;
    for (uint32_t end = i + ways * E_STRIDE; i < end; i += E_STRIDE) {
      if (e[i + E_VPN] != lo || e[i + E_SPACE] != space) continue;
      uint32_t tg = e[i + E_TAG];
      if (tg != want && (tg & ~TAG_PCID_MASK) != want_global) continue;
      if ((e[i + E_DENY] >> (access & 31)) & 1) {
        t->rights_misses++;
        t->misses++;
        return TLB_MISS;
      }
      int32_t fn = (int32_t)e[i + E_FRAME];
      if (fn < 0) return TLB_HIGH_FRAME;
      if (t->lru) t->fs[(i >> E_TO_F) + F_STAMP] = ++t->clock;
      t->hits[z]++;
      return fn + (int32_t)((va_lo >> 12) & ((1u << (shift - 12)) - 1));
    }
  }
  t->misses++;
  return TLB_MISS;
}

/* Tlb.lookupFrame: the 4 KiB frame number of the access, TLB_MISS or TLB_HIGH_FRAME. */
static inline int32_t tlb_lookup_frame(Tlb *t, uint32_t va_hi, uint32_t va_lo, uint32_t access) {
  uint32_t h = va_hi & VA_HI_MASK;
  uint32_t ways = t->ways4k;
  if (ways != 0) {
    uint32_t lo = (va_lo >> 12) | (h << 20);
    uint32_t hi = h >> 12;
    const uint32_t *e = t->ent;
    uint32_t space = t->cur_space;
    /* The JS masks this index to bound it for V8's typer; the masks change nothing, and gcc
       is better off without them. */
    uint32_t first = (lo & t->set_mask4k) * ways * E_STRIDE;
    uint32_t end = first + ways * E_STRIDE;
    for (uint32_t i = first; i < end; i += E_STRIDE) {
      if (e[i + E_VPN] != lo || e[i + E_SPACE] != space) continue;
      uint32_t tg = e[i + E_TAG];
      if (tg != (hi | t->cur_tag) && (tg & ~TAG_PCID_MASK) != (hi | TAG_VALID | TAG_GLOBAL)) continue;
      if ((e[i + E_DENY] >> (access & 31)) & 1) {
        t->rights_misses++;
        t->misses++;
        return TLB_MISS;
      }
      int32_t fn = (int32_t)e[i + E_FRAME];
      if (fn < 0) return TLB_HIGH_FRAME;
      if (t->lru) t->fs[(i >> E_TO_F) + F_STAMP] = ++t->clock;
      t->hits[0]++;
      return fn;
    }
  }
  return tlb_lookup_frame_large(t, h, va_lo, access);
}

typedef struct {
  Tlb *tlb;
  HostMemory *host;
  uint64_t accesses, tlb_hits, tlb_misses;
  int status;
} Vcpu;

/* Vcpu.read32 on its hit path (a miss would walk: never taken here, checked). */
static uint32_t read32(Vcpu *v, uint32_t va_hi, uint32_t va_lo, uint32_t access) {
  if (va_lo & 3) die("read32 needs a 4-byte aligned address");
  v->accesses++;
  int32_t fn = tlb_lookup_frame(v->tlb, va_hi, va_lo, access);
  if (fn < 0) die("unexpected TLB miss");
  v->tlb_hits++;
  v->status = 0;
  uint32_t *words = hm_frame_words(v->host, fn);
  return words[v->host->frame_base + ((va_lo & 0xfff) >> 2)];
}

static int write32(Vcpu *v, uint32_t va_hi, uint32_t va_lo, uint32_t access, uint32_t value) {
  if (va_lo & 3) die("write32 needs a 4-byte aligned address");
  v->accesses++;
  int32_t fn = tlb_lookup_frame(v->tlb, va_hi, va_lo, access);
  if (fn < 0) die("unexpected TLB miss");
  v->tlb_hits++;
  v->status = 0;
  uint32_t *words = hm_frame_words(v->host, fn);
  words[v->host->frame_base + ((va_lo & 0xfff) >> 2)] = value;
  return 1;
}

static uint32_t pass_read(Vcpu *v, const AccessList *l) {
  uint32_t sum = 0;
  for (uint64_t i = 0; i < l->count; i++) sum += read32(v, l->va[2 * i + 1], l->va[2 * i], l->access[i]);
  return sum;
}

static uint32_t pass_write(Vcpu *v, const AccessList *l) {
  uint32_t n = 0;
  for (uint64_t i = 0; i < l->count; i++)
    if (write32(v, l->va[2 * i + 1], l->va[2 * i], l->access[i], (uint32_t)i)) n++;
  return n;
}

static uint32_t *rd_array32(Reader *r, uint64_t n) {
  uint32_t *a = malloc(n * 4);
  for (uint64_t i = 0; i < n; i++) a[i] = (uint32_t)rd_u64(r);
  return a;
}

static uint64_t *rd_array64(Reader *r, uint64_t n) {
  uint64_t *a = malloc(n * 8);
  for (uint64_t i = 0; i < n; i++) a[i] = rd_u64(r);
  return a;
}

static void load_tlb(const char *path, Tlb *t) {
  Reader r = read_file(path);
  expect_tag(&r, "VMMBTLB2");
  t->capacity = rd_u64(&r);
  for (int z = 0; z < 3; z++) t->z_base[z] = (uint32_t)rd_u64(&r);
  for (int z = 0; z < 3; z++) t->z_ways[z] = (uint32_t)rd_u64(&r);
  for (int z = 0; z < 3; z++) t->z_set_mask[z] = (uint32_t)rd_u64(&r);
  t->lru = (int)rd_u64(&r);
  t->cur_space = (uint32_t)rd_u64(&r);
  t->cur_tag = (uint32_t)rd_u64(&r);
  t->clock = rd_u64(&r);
  t->ways4k = t->z_ways[0];
  t->set_mask4k = t->z_set_mask[0];
  t->ent = rd_array32(&r, t->capacity * E_STRIDE);
  t->fs = rd_array64(&r, t->capacity * F_STRIDE);
  memset(t->hits, 0, sizeof t->hits);
  t->misses = t->rights_misses = 0;
}

static void print_runs(const char *name, const double *ms, const double *cpu, const uint32_t *sums, int n) {
  printf("\"%s\":{\"ms\":[", name);
  for (int i = 0; i < n; i++) printf("%s%.4f", i ? "," : "", ms[i]);
  printf("],\"cpuMs\":[");
  for (int i = 0; i < n; i++) printf("%s%.4f", i ? "," : "", cpu[i]);
  printf("],\"sums\":[");
  for (int i = 0; i < n; i++) printf("%s%u", i ? "," : "", sums[i]);
  printf("]}");
}

int main(int argc, char **argv) {
  if (argc != 7) die("usage: tlb IMAGE TLBIMAGE WARMUP RUNS READLIST WRITELIST");
  static Machine m;
  static Tlb t;
  Reader r = read_file(argv[1]);
  load_machine(&r, &m);
  load_tlb(argv[2], &t);
  int warmup = atoi(argv[3]);
  int runs = atoi(argv[4]);
  AccessList rl = load_access_list(argv[5]);
  AccessList wl = load_access_list(argv[6]);
  Vcpu v = {&t, &m.host, 0, 0, 0, 0};
  double *ms_r = calloc((size_t)runs, sizeof(double)), *ms_w = calloc((size_t)runs, sizeof(double));
  double *cpu_r = calloc((size_t)runs, sizeof(double)), *cpu_w = calloc((size_t)runs, sizeof(double));
  uint32_t *sum_r = calloc((size_t)runs, 4), *sum_w = calloc((size_t)runs, 4);
  for (int i = 0; i < warmup; i++) {
    pass_read(&v, &rl);
    pass_write(&v, &wl);
  }
  for (int i = 0; i < runs; i++) {
    double t0 = now_ms(), c0 = cpu_ms();
    sum_r[i] = pass_read(&v, &rl);
    cpu_r[i] = cpu_ms() - c0;
    ms_r[i] = now_ms() - t0;
    t0 = now_ms();
    c0 = cpu_ms();
    sum_w[i] = pass_write(&v, &wl);
    cpu_w[i] = cpu_ms() - c0;
    ms_w[i] = now_ms() - t0;
  }
  printf("{");
  print_runs("read", ms_r, cpu_r, sum_r, runs);
  printf(",");
  print_runs("write", ms_w, cpu_w, sum_w, runs);
  printf(",\"accesses\":%llu,\"hits\":%llu,\"misses\":%llu,\"memHash\":%u}\n", (unsigned long long)v.accesses,
         (unsigned long long)(t.hits[0] + t.hits[1] + t.hits[2]), (unsigned long long)t.misses,
         hash_host_memory(&m.host));
  return 0;
}
