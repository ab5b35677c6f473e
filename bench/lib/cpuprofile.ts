/**
 * Summarises a V8 .cpuprofile: self time per function, top N.
 *   npx tsx bench/lib/cpuprofile.ts FILE.cpuprofile [N]
 */
import { readFileSync } from "node:fs";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
const file = process.argv[2];
const top = Number(process.argv[3] ?? 20);
const prof = JSON.parse(readFileSync(file, "utf8")) as { nodes: Node[]; samples: number[] };
const self = new Map<string, number>();
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
for (const id of prof.samples) {
  const n = byId.get(id)!;
  const cf = n.callFrame;
  const key = `${cf.functionName || "(anonymous)"} ${cf.url.split("/").slice(-2).join("/")}:${cf.lineNumber + 1}`;
  self.set(key, (self.get(key) ?? 0) + 1);
}
const total = prof.samples.length;
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top))
  console.log(`${((v / total) * 100).toFixed(1).padStart(5)}%  ${k}`);
