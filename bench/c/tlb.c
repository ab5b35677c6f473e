/*
 * C reference for bench/tlb.bench.ts: TLB-hit accesses, i.e. Vcpu.read32 / Vcpu.write32
 * (src/vm/vcpu.ts) when the access hits: the alignment check, the access counter, the
 * set-associative lookup of Tlb.lookup (src/hw/tlb.ts) with the same tag compares (page
 * number low half, space = EPT tag|VPID, tag = V|G|PCID|page number high bits, global
 * entries matching any PCID), the rights check through the same 256-entry permission table
 * (`deny`), the LRU stamp and per-size hit counter, then the load (or store) through
 * HostMemory.frameWords (vmmu.h). The TLB's state (entries, context, permission table) is
 * the JS TLB's after its warm-up (bench/lib/tlb-image.ts); host memory is the JS guest's.
 *
 * usage: tlb IMAGE TLBIMAGE WARMUP RUNS READLIST WRITELIST   (prints JSON on stdout)
 * WARMUP passes of each, then RUNS timed passes of read32 over READLIST and write32 over
 * WRITELIST (value = index), alternating.
 */
#include "vmmu.h"

#define TLB_MISS (-1)
#define VA_HI_MASK 0x1ffffffu
#define TAG_VALID (1u << 26)
#define TAG_GLOBAL (1u << 25)
#define TAG_PCID_MASK (0xfffu << 13)

static const uint32_t SHIFTS[3] = {12, 21, 30};

typedef struct {
  uint64_t capacity;
  uint32_t z_base[3], z_ways[3], z_set_mask[3];
  int lru;
  uint32_t cur_space, cur_tag;
  uint64_t clock;
  uint32_t deny[256];
  uint32_t *vpn, *tag, *space, *attr, *info;
  uint64_t *frame, *stamp;
  uint64_t hits[3], misses, rights_misses;
} Tlb;

/* Tlb.lookup: returns the physical address or TLB_MISS. */
static inline int64_t tlb_lookup(Tlb *t, uint32_t va_hi, uint32_t va_lo, uint32_t access) {
  uint32_t h = va_hi & VA_HI_MASK;
  for (int z = 0; z < 3; z++) {
    uint32_t ways = t->z_ways[z];
    if (ways == 0) continue;
    uint32_t shift = SHIFTS[z];
    uint32_t lo = (va_lo >> shift) | (h << (32 - shift));
    uint32_t hi = h >> shift;
    uint32_t want = hi | t->cur_tag;
    uint32_t want_global = hi | TAG_VALID | TAG_GLOBAL;
    uint32_t s = t->z_base[z] + (lo & t->z_set_mask[z]) * ways;
    for (uint32_t end = s + ways; s < end; s++) {
      if (t->vpn[s] != lo || t->space[s] != t->cur_space) continue;
      uint32_t tg = t->tag[s];
      if (tg != want && (tg & ~TAG_PCID_MASK) != want_global) continue;
      if ((t->deny[t->attr[s]] >> (access & 31)) & 1) {
        t->rights_misses++;
        t->misses++;
        return TLB_MISS;
      }
      if (t->lru) t->stamp[s] = ++t->clock;
      t->hits[z]++;
      return (int64_t)(t->frame[s] + (va_lo & ((1u << shift) - 1)));
    }
  }
  t->misses++;
  return TLB_MISS;
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
  int64_t hpa = tlb_lookup(v->tlb, va_hi, va_lo, access);
  if (hpa == TLB_MISS) die("unexpected TLB miss");
  v->tlb_hits++;
  v->status = 0;
  uint32_t *words = hm_frame_words(v->host, hpa / 4096);
  return words[v->host->frame_base + ((hpa & 0xfff) >> 2)];
}

static int write32(Vcpu *v, uint32_t va_hi, uint32_t va_lo, uint32_t access, uint32_t value) {
  if (va_lo & 3) die("write32 needs a 4-byte aligned address");
  v->accesses++;
  int64_t hpa = tlb_lookup(v->tlb, va_hi, va_lo, access);
  if (hpa == TLB_MISS) die("unexpected TLB miss");
  v->tlb_hits++;
  v->status = 0;
  uint32_t *words = hm_frame_words(v->host, hpa / 4096);
  words[v->host->frame_base + ((hpa & 0xfff) >> 2)] = value;
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
  expect_tag(&r, "VMMBTLB1");
  t->capacity = rd_u64(&r);
  for (int z = 0; z < 3; z++) t->z_base[z] = (uint32_t)rd_u64(&r);
  for (int z = 0; z < 3; z++) t->z_ways[z] = (uint32_t)rd_u64(&r);
  for (int z = 0; z < 3; z++) t->z_set_mask[z] = (uint32_t)rd_u64(&r);
  t->lru = (int)rd_u64(&r);
  t->cur_space = (uint32_t)rd_u64(&r);
  t->cur_tag = (uint32_t)rd_u64(&r);
  t->clock = rd_u64(&r);
  for (int i = 0; i < 256; i++) t->deny[i] = (uint32_t)rd_u64(&r);
  t->vpn = rd_array32(&r, t->capacity);
  t->tag = rd_array32(&r, t->capacity);
  t->space = rd_array32(&r, t->capacity);
  t->attr = rd_array32(&r, t->capacity);
  t->info = rd_array32(&r, t->capacity);
  t->frame = rd_array64(&r, t->capacity);
  t->stamp = rd_array64(&r, t->capacity);
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
