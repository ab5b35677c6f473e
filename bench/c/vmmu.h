/*
 * The vmmu memory model in C, for the benchmarks' C counterparts. It mirrors
 * src/mem/ structure for structure, so the C does the same work as the JS:
 *
 *   GuestPhysical.frameWords(gfn)                          gp_frame_words
 *     frame cache hit: direct-mapped gfn → (words, base), checked against the memslot
 *     generation and the host address space epoch; on a miss:
 *     Memslots.find(gfn)         last-slot cache, then binary search over sorted slots
 *     HostAddressSpace.frameOf   last-leaf cache, then a hash map (hvaPage/512 → int32[512])
 *     HostMemory.frameWords      2 MiB chunks of 512 frames × 1024 words
 *   GuestPhysical.compareExchange                          gp_compare_exchange
 *
 * and loads the image written by bench/lib/image.ts. Header-only (static functions) so each
 * benchmark is one translation unit and gcc may inline as it sees fit.
 */
#ifndef VMMU_BENCH_H
#define VMMU_BENCH_H

#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHUNK_FRAMES 512u
#define CHUNK_SHIFT 9u
#define FRAME_WORDS 1024u

#define CMPXCHG_OK 0
#define CMPXCHG_CHANGED 1
#define CMPXCHG_READONLY 2
#define CMPXCHG_NOT_RAM 3

static void die(const char *msg) {
  fprintf(stderr, "%s\n", msg);
  exit(1);
}

/* ---- HostMemory ---------------------------------------------------------------------- */

typedef struct {
  uint64_t capacity;
  uint32_t **chunks; /* NULL: chunk not allocated */
  uint64_t nchunks;
  uint64_t next_unused;
  uint64_t frame_base;
  uint8_t *allocated; /* [hfn] 1 when allocated (stands in for the reference counts) */
} HostMemory;

static uint32_t *hm_frame_words(HostMemory *m, int64_t hfn) {
  if (hfn < 0) return NULL;
  uint64_t c = (uint64_t)hfn >> CHUNK_SHIFT;
  uint32_t *words = c < m->nchunks ? m->chunks[c] : NULL;
  if (words == NULL) return NULL;
  m->frame_base = ((uint64_t)hfn & (CHUNK_FRAMES - 1)) * FRAME_WORDS;
  return words;
}

static void hm_ensure_chunk(HostMemory *m, uint64_t hfn) {
  uint64_t c = hfn >> CHUNK_SHIFT;
  if (c >= m->nchunks) die("host frame beyond capacity");
  if (!m->chunks[c]) {
    m->chunks[c] = calloc(CHUNK_FRAMES * FRAME_WORDS, 4);
    if (!m->chunks[c]) die("out of memory");
  }
}

/* Cold path (first touch of a host page); never taken by the benchmarks. */
static int64_t hm_alloc(HostMemory *m) {
  if (m->next_unused >= m->capacity) die("host memory exhausted");
  uint64_t f = m->next_unused++;
  hm_ensure_chunk(m, f);
  m->allocated[f] = 1;
  return (int64_t)f;
}

/* ---- HostAddressSpace ------------------------------------------------------------------ */

typedef struct {
  uint64_t key;
  int32_t *leaf; /* NULL: empty bucket */
} HasBucket;

typedef struct {
  HostMemory *memory;
  HasBucket *buckets;
  uint64_t mask; /* capacity - 1, a power of two */
  uint64_t count;
  int64_t last_key;
  int32_t *last_leaf;
  int64_t epoch; /* bumped when an existing mapping changes (never, in the benchmarks) */
} HostAddressSpace;

static uint64_t has_hash(uint64_t key) { return (key * 0x9e3779b97f4a7c15ull) >> 17; }

static int32_t *has_get(HostAddressSpace *s, uint64_t key) {
  for (uint64_t i = has_hash(key) & s->mask;; i = (i + 1) & s->mask) {
    HasBucket *b = &s->buckets[i];
    if (b->leaf == NULL) return NULL;
    if (b->key == key) return b->leaf;
  }
}

static void has_put(HostAddressSpace *s, uint64_t key, int32_t *leaf) {
  if ((s->count + 1) * 2 > s->mask + 1) die("host address space table full");
  uint64_t i = has_hash(key) & s->mask;
  while (s->buckets[i].leaf != NULL) i = (i + 1) & s->mask;
  s->buckets[i].key = key;
  s->buckets[i].leaf = leaf;
  s->count++;
}

static void has_init(HostAddressSpace *s, HostMemory *m, uint64_t capacity) {
  s->memory = m;
  s->buckets = calloc(capacity, sizeof(HasBucket));
  s->mask = capacity - 1;
  s->count = 0;
  s->last_key = -1;
  s->last_leaf = NULL;
  s->epoch = 0;
}

static int64_t has_frame_of(HostAddressSpace *s, uint64_t hva_page) {
  uint64_t key = hva_page / 512;
  int32_t *leaf = (int64_t)key == s->last_key ? s->last_leaf : has_get(s, key);
  if (!leaf) {
    leaf = calloc(512, sizeof(int32_t));
    has_put(s, key, leaf);
  }
  s->last_key = (int64_t)key;
  s->last_leaf = leaf;
  uint64_t i = hva_page - key * 512;
  int32_t slot = leaf[i];
  if (slot == 0) {
    slot = (int32_t)hm_alloc(s->memory) + 1;
    leaf[i] = slot;
  }
  return slot - 1;
}

/* ---- Memslots ---------------------------------------------------------------------------- */

typedef struct {
  uint64_t id, base_gfn, pages, hva_page;
  int read_only, dirty_log;
  uint32_t *dirty_bitmap;
} Memslot;

typedef struct {
  Memslot *slots; /* sorted by base_gfn */
  int64_t n;
  Memslot *last;
  uint64_t generation;
} Memslots;

static Memslot *ms_find(Memslots *ms, uint64_t gfn) {
  Memslot *l = ms->last;
  if (l != NULL && gfn >= l->base_gfn && gfn < l->base_gfn + l->pages) return l;
  int64_t lo = 0, hi = ms->n - 1;
  while (lo <= hi) {
    int64_t mid = (lo + hi) >> 1;
    Memslot *s = &ms->slots[mid];
    if (gfn < s->base_gfn) hi = mid - 1;
    else if (gfn >= s->base_gfn + s->pages) lo = mid + 1;
    else {
      ms->last = s;
      return s;
    }
  }
  return NULL;
}

/* ---- GuestPhysical ------------------------------------------------------------------------- */

/* GuestPhysical's frame cache: direct-mapped gfn → (words, base), emptied when the memslot
 * generation or the host address space epoch changes (src/mem/guest-physical.ts). */
#define FRAME_CACHE_SIZE 4096u
#define FRAME_CACHE_MASK (FRAME_CACHE_SIZE - 1)

typedef struct {
  Memslots *memslots;
  HostAddressSpace *host_space;
  uint64_t frame_base;
  uint64_t cache_gfn[FRAME_CACHE_SIZE]; /* UINT64_MAX: empty */
  uint32_t cache_base[FRAME_CACHE_SIZE];
  uint32_t *cache_words[FRAME_CACHE_SIZE];
  int64_t cache_generation, cache_epoch;
} GuestPhysical;

static void gp_init(GuestPhysical *gp, Memslots *ms, HostAddressSpace *space) {
  gp->memslots = ms;
  gp->host_space = space;
  gp->frame_base = 0;
  memset(gp->cache_gfn, 0xff, sizeof gp->cache_gfn);
  memset(gp->cache_words, 0, sizeof gp->cache_words);
  gp->cache_generation = gp->cache_epoch = -1;
}

static uint32_t *gp_lookup_frame(GuestPhysical *gp, uint64_t gfn, uint64_t i) {
  Memslot *slot = ms_find(gp->memslots, gfn);
  if (slot == NULL) return NULL;
  int64_t hfn = has_frame_of(gp->host_space, slot->hva_page + (gfn - slot->base_gfn));
  uint32_t *words = hm_frame_words(gp->host_space->memory, hfn);
  uint64_t base = gp->host_space->memory->frame_base;
  gp->frame_base = base;
  if (words != NULL) {
    if (gp->cache_generation != (int64_t)gp->memslots->generation || gp->cache_epoch != gp->host_space->epoch) {
      memset(gp->cache_gfn, 0xff, sizeof gp->cache_gfn);
      memset(gp->cache_words, 0, sizeof gp->cache_words);
      gp->cache_generation = (int64_t)gp->memslots->generation;
      gp->cache_epoch = gp->host_space->epoch;
    }
    gp->cache_gfn[i] = gfn;
    gp->cache_words[i] = words;
    gp->cache_base[i] = (uint32_t)base;
  }
  return words;
}

static uint32_t *gp_frame_words(GuestPhysical *gp, uint64_t gfn) {
#ifdef VMMU_NO_FRAME_CACHE
  /* The memory model before the frame cache (for the before/after comparison). */
  Memslot *slot = ms_find(gp->memslots, gfn);
  if (slot == NULL) return NULL;
  int64_t hfn = has_frame_of(gp->host_space, slot->hva_page + (gfn - slot->base_gfn));
  uint32_t *words = hm_frame_words(gp->host_space->memory, hfn);
  gp->frame_base = gp->host_space->memory->frame_base;
  return words;
#endif
  uint64_t i = gfn & FRAME_CACHE_MASK;
  if (gp->cache_gfn[i] == gfn && gp->cache_generation == (int64_t)gp->memslots->generation &&
      gp->cache_epoch == gp->host_space->epoch) {
    gp->frame_base = gp->cache_base[i];
    return gp->cache_words[i];
  }
  return gp_lookup_frame(gp, gfn, i);
}

static int compare_exchange_words(uint32_t *words, uint64_t base, uint64_t offset_in_frame, int bytes,
                                  uint32_t exp_lo, uint32_t exp_hi, uint32_t new_lo, uint32_t new_hi) {
  uint64_t i = base + (offset_in_frame >> 2);
  if (bytes == 8) {
    if (words[i] != exp_lo || words[i + 1] != exp_hi) return CMPXCHG_CHANGED;
    words[i] = new_lo;
    words[i + 1] = new_hi;
  } else {
    if (words[i] != exp_lo) return CMPXCHG_CHANGED;
    words[i] = new_lo;
  }
  return CMPXCHG_OK;
}

static void mark_dirty(Memslot *slot, uint64_t gfn) {
  if (slot->dirty_bitmap) {
    uint64_t i = gfn - slot->base_gfn;
    slot->dirty_bitmap[i >> 5] |= 1u << (i & 31);
  }
}

static int gp_compare_exchange(GuestPhysical *gp, uint64_t pa, int bytes, uint32_t exp_lo, uint32_t exp_hi,
                               uint32_t new_lo, uint32_t new_hi) {
  uint64_t gfn = pa / 4096;
  Memslot *slot = ms_find(gp->memslots, gfn);
  if (slot == NULL) return CMPXCHG_NOT_RAM;
  if (slot->read_only) return CMPXCHG_READONLY;
  uint32_t *words = gp_frame_words(gp, gfn);
  int r = compare_exchange_words(words, gp->frame_base, pa % 4096, bytes, exp_lo, exp_hi, new_lo, new_hi);
  if (r == CMPXCHG_OK) mark_dirty(slot, gfn);
  return r;
}

/* ---- Image loading (see bench/lib/image.ts) -------------------------------------------------- */

typedef struct {
  uint8_t *data;
  size_t size, pos;
} Reader;

static Reader read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) die("cannot open input file");
  fseek(f, 0, SEEK_END);
  Reader r = {malloc((size_t)ftell(f)), (size_t)ftell(f), 0};
  fseek(f, 0, SEEK_SET);
  if (fread(r.data, 1, r.size, f) != r.size) die("short read");
  fclose(f);
  return r;
}

static void expect_tag(Reader *r, const char *tag) {
  size_t n = strlen(tag);
  if (r->pos + n > r->size || memcmp(r->data + r->pos, tag, n) != 0) die("bad file tag");
  r->pos += n;
}

static uint64_t rd_u64(Reader *r) {
  if (r->pos + 8 > r->size) die("truncated file");
  uint64_t v;
  memcpy(&v, r->data + r->pos, 8);
  r->pos += 8;
  return v;
}

static const uint8_t *rd_bytes(Reader *r, size_t n) {
  if (r->pos + n > r->size) die("truncated file");
  const uint8_t *p = r->data + r->pos;
  r->pos += n;
  return p;
}

typedef struct {
  HostMemory host;
  HostAddressSpace space;
  Memslots memslots;
  GuestPhysical physical;
} Machine;

/* Reads the memory-model part of an image; the reader is left at the walker section. */
static void load_machine(Reader *r, Machine *m) {
  expect_tag(r, "VMMBIMG1");
  Memslots *ms = &m->memslots;
  ms->n = (int64_t)rd_u64(r);
  ms->slots = calloc((size_t)ms->n, sizeof(Memslot));
  ms->last = NULL;
  ms->generation = 0;
  for (int64_t i = 0; i < ms->n; i++) {
    Memslot *s = &ms->slots[i];
    s->id = rd_u64(r);
    s->base_gfn = rd_u64(r);
    s->pages = rd_u64(r);
    s->hva_page = rd_u64(r);
    s->read_only = (int)rd_u64(r);
    s->dirty_log = (int)rd_u64(r);
    s->dirty_bitmap = s->dirty_log ? calloc((s->pages + 31) / 32, 4) : NULL;
  }

  HostMemory *h = &m->host;
  h->capacity = rd_u64(r);
  h->nchunks = (h->capacity + CHUNK_FRAMES - 1) / CHUNK_FRAMES;
  h->chunks = calloc(h->nchunks, sizeof(uint32_t *));
  h->frame_base = 0;
  h->next_unused = 0;
  h->allocated = calloc(h->capacity, 1);
  uint64_t nalloc = rd_u64(r);
  for (uint64_t i = 0; i < nalloc; i++) {
    uint64_t f = rd_u64(r);
    hm_ensure_chunk(h, f);
    h->allocated[f] = 1;
    if (f + 1 > h->next_unused) h->next_unused = f + 1;
  }

  uint64_t nmapped = rd_u64(r);
  uint64_t cap = 64;
  while (cap < nmapped / 512 * 4 + 64) cap *= 2;
  has_init(&m->space, h, cap);
  for (uint64_t i = 0; i < nmapped; i++) {
    uint64_t page = rd_u64(r);
    uint64_t hfn = rd_u64(r);
    uint64_t key = page / 512;
    int32_t *leaf = has_get(&m->space, key);
    if (!leaf) {
      leaf = calloc(512, sizeof(int32_t));
      has_put(&m->space, key, leaf);
    }
    leaf[page - key * 512] = (int32_t)hfn + 1;
  }

  uint64_t nframes = rd_u64(r);
  for (uint64_t i = 0; i < nframes; i++) {
    uint64_t f = rd_u64(r);
    uint32_t *words = hm_frame_words(h, (int64_t)f);
    if (!words) die("frame data for an unallocated frame");
    memcpy(words + h->frame_base, rd_bytes(r, 4096), 4096);
  }

  gp_init(&m->physical, ms, &m->space);
}

/* Same hash as hashHostMemory in bench/lib/image.ts. */
static uint32_t hash_host_memory(HostMemory *h) {
  uint32_t x = 0x811c9dc5u;
  for (uint64_t f = 0; f < h->capacity; f++) {
    if (!h->allocated[f]) continue;
    const uint32_t *w = h->chunks[f >> CHUNK_SHIFT] + (f & (CHUNK_FRAMES - 1)) * FRAME_WORDS;
    for (uint64_t i = 0; i < FRAME_WORDS; i++) x = (x ^ w[i]) * 0x01000193u;
  }
  return x;
}

typedef struct {
  uint64_t count;
  const uint32_t *va; /* [2i] low half, [2i+1] high half */
  const uint8_t *access;
} AccessList;

static AccessList load_access_list(const char *path) {
  Reader r = read_file(path);
  expect_tag(&r, "VMMBACC1");
  AccessList l;
  l.count = rd_u64(&r);
  uint32_t *va = malloc(l.count * 8);
  memcpy(va, rd_bytes(&r, l.count * 8), l.count * 8);
  l.va = va;
  l.access = rd_bytes(&r, l.count);
  return l;
}

/* Wall-clock and process CPU time in milliseconds (the JS side uses performance.now() and
 * process.cpuUsage()). */
static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static double cpu_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

#endif
