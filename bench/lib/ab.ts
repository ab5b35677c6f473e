/**
 * Interleaved A/B comparison of two versions of src/ on the walk workload, for measuring an
 * optimisation before keeping it (BENCHMARKS.md, "What was changed"):
 *
 *   mkdir -p bench/build/ab && cp -r src bench/build/ab/$USER-before    # then edit src/
 *   npx tsx bench/lib/ab.ts bench/build/ab/$USER-before src [pairs]
 *
 * Use a directory name of your own: others run this tool in the same tree, and a shared
 * `before` was replaced under one measurement. Delete the copies afterwards: `tsc -p
 * tsconfig.json` includes bench/ and type-checks them too.
 *
 * Both versions are loaded into one process (separate module instances, separate guests);
 * passes of A and B alternate, and the median of the per-pair B/A ratios of CPU-time rates is
 * printed for user/kernel × walk/translate. Keep both trees inside the project: copies outside
 * it ran 15–20 % slower under tsx. An A/A run shows the noise floor (a few per cent). Run it
 * twice: once one side came out 4× slower for a whole run, and not again.
 */

import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { type AccessList, buildGuest, type Guest, kernelAccesses, userAccesses, type Vmmu } from "./guest.js";

const [dirA, dirB] = [process.argv[2], process.argv[3]];
if (!dirA || !dirB) {
  console.error("usage: npx tsx bench/lib/ab.ts SRC_A SRC_B [pairs]");
  process.exit(1);
}
const pairs = Number(process.argv[4] ?? 9);

const cpuNow = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

type Pass = (walker: Guest["walker"], w: unknown, l: AccessList) => number;

interface Side {
  name: string;
  g: Guest;
  w: unknown;
  lists: Record<"user" | "kernel", AccessList>;
  passes: Record<"walk" | "translate", Pass>;
}

// Each side gets its own copies of the pass loops, so their type feedback stays separate.
function passes(): Record<"walk" | "translate", Pass> {
  const make = (method: string) =>
    new Function(
      "walker",
      "w",
      "l",
      `let sum = 0;
       for (let i = 0; i < l.count; i++) {
         walker.${method}(l.va[2 * i + 1], l.va[2 * i], l.access[i], w);
         sum = (sum + (w.address >>> 0) + w.lo[w.depth - 1]) | 0;
       }
       return sum;`,
    ) as Pass;
  return { walk: make("walk"), translate: make("translate") };
}

async function side(dir: string): Promise<Side> {
  const api = (await import(pathToFileURL(resolve(dir, "index.ts")).href)) as Vmmu;
  const g = buildGuest({ pages: 65536, seed: 1 }, api);
  const lists = { user: userAccesses(g, 1_000_000, 2), kernel: kernelAccesses(g, 1_000_000, 3) };
  return { name: dir, g, w: new api.Walk(), lists, passes: passes() };
}

const A = await side(dirA);
const B = await side(dirB);
for (const s of [A, B])
  for (const l of Object.values(s.lists))
    for (let i = 0; i < 3; i++) {
      s.passes.walk(s.g.walker, s.w, l);
      s.passes.translate(s.g.walker, s.w, l);
    }

const median = (x: number[]) => [...x].sort((a, b) => a - b)[x.length >> 1];
for (const list of ["user", "kernel"] as const)
  for (const v of ["walk", "translate"] as const) {
    const rate = (s: Side) => {
      const t0 = cpuNow();
      s.passes[v](s.g.walker, s.w, s.lists[list]);
      return s.lists[list].count / (cpuNow() - t0) / 1000;
    };
    const a: number[] = [];
    const b: number[] = [];
    const r: number[] = [];
    for (let p = 0; p < pairs; p++) {
      // Alternate which side runs first.
      let ra: number;
      let rb: number;
      if (p % 2 === 0) {
        ra = rate(A);
        rb = rate(B);
      } else {
        rb = rate(B);
        ra = rate(A);
      }
      a.push(ra);
      b.push(rb);
      r.push(rb / ra);
    }
    console.log(
      `${`${list} ${v}`.padEnd(16)} A ${median(a).toFixed(2)} M/s  B ${median(b).toFixed(2)} M/s  B/A ${median(r).toFixed(3)}`,
    );
  }
