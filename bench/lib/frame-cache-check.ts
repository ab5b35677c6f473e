/**
 * Differential check of GuestPhysical's frame cache (src/mem/guest-physical.ts): random
 * memslot changes (move, flags, delete, add) and host address space changes (discard,
 * migrate, releaseAll) interleaved with lookups; every cached `frameWords` answer must be the
 * uncached one (memslot → host virtual page → host frame), and writes through it must land
 * in that frame. Freed host frames are handed to other pages before the discarded pages come
 * back, so a stale cache entry would show. Not a benchmark: run it after touching the cache.
 *
 *   npx tsx bench/lib/frame-cache-check.ts
 */

import { GuestPhysical, HostAddressSpace, HostMemory, Memslots } from "../../src/index.js";
import { Prng } from "./prng.js";

/** Host virtual pages outside every memslot, populated to take freed frames. */
const STEAL_BASE = 1 << 20;

let lookups = 0;
for (let seed = 1; seed <= 200; seed++) {
  const rng = new Prng(seed);
  const host = new HostMemory(16 << 20);
  const space = new HostAddressSpace(host);
  const slots = new Memslots();
  const phys = new GuestPhysical(slots, space);
  // Three slots, 64 pages each, at gfn 0, 256, 512, backed by hva pages 0, 64, 128.
  for (let id = 0; id < 3; id++) slots.add({ id, baseGfn: id * 256, pages: 64, hvaPage: id * 64 });
  let steal = STEAL_BASE;
  const recent: number[] = [];
  const hvaOf = (gfn: number) => {
    const s = slots.find(gfn);
    return s ? s.hvaPage + (gfn - s.baseGfn) : -1;
  };
  const uncached = (gfn: number): [Uint32Array | null, number] => {
    const s = slots.find(gfn);
    if (!s) return [null, -1];
    const words = host.frameWords(space.frameOf(s.hvaPage + (gfn - s.baseGfn)));
    return [words, host.frameBase];
  };
  for (let step = 0; step < 2000; step++) {
    const op = rng.below(100);
    const target = recent.length ? recent[rng.below(recent.length)] : 0;
    if (op < 8 && hvaOf(target) >= 0) {
      space.discard(hvaOf(target), 1 + rng.below(3));
      for (let k = 0; k < 4; k++) space.frameOf(steal++); // take the freed frames
    } else if (op < 12 && hvaOf(target) >= 0) {
      space.migrate(hvaOf(target));
    } else if (op < 14) {
      const id = rng.below(3);
      const s = slots.list().find((x) => x.id === id);
      if (s) slots.move(id, s.baseGfn === id * 256 ? id * 256 + 128 : id * 256);
      else slots.add({ id, baseGfn: id * 256, pages: 64, hvaPage: id * 64 });
    } else if (op < 15) {
      const id = rng.below(3);
      if (slots.list().some((x) => x.id === id)) {
        if (rng.below(2) === 0) slots.delete(id);
        else slots.setFlags(id, { dirtyLog: rng.below(2) === 1 });
      }
    } else if (op < 16 && rng.below(8) === 0) {
      space.releaseAll();
    } else {
      const gfn = rng.below(4) === 0 ? rng.below(800) : target + rng.below(3);
      const words = phys.frameWords(gfn); // first: it may populate the page
      const base = phys.frameBase;
      const [refWords, refBase] = uncached(gfn);
      lookups++;
      if (words !== refWords || (words !== null && base !== refBase))
        throw new Error(`seed ${seed} step ${step}: gfn ${gfn}: cached answer differs from the uncached one`);
      if (words !== null) {
        recent.push(gfn);
        if (recent.length > 8) recent.shift();
        const v = rng.next();
        words[base + 5] = v;
        const [w2, b2] = uncached(gfn);
        if (w2![b2 + 5] !== v) throw new Error(`seed ${seed} step ${step}: write through the cache lost`);
      }
    }
  }
}
console.log(`frame cache: ${lookups} lookups agree with the uncached path`);
