/**
 * Reports of a simulation: a text table (one column per MMU and one for the native
 * estimate), the JSON document (schemaVersion 1, docs/SIMULATOR.md) and a standalone SVG
 * bar chart of cycles per MMU split by cause. Pure functions returning strings.
 */

import { CYCLE_CAUSES, type CycleBreakdown } from "./cost.js";
import type { ExitTotals, RunResult, SimulationReport } from "./runner.js";

const EXIT_LABELS: Record<keyof ExitTotals, string> = {
  eptViolation: "EPT violation",
  eptMisconfig: "EPT misconfig",
  npf: "NPT fault",
  shadowPageFault: "shadow #PF",
  emulation: "emulated write",
  hypercall: "hypercall",
  mmio: "MMIO",
  cr3Write: "CR3 write",
  invlpg: "INVLPG",
};

const CAUSE_LABELS: Record<(typeof CYCLE_CAUSES)[number], string> = {
  tlb: "TLB lookups",
  walks: "page walks",
  exits: "VM exits",
  guestFaults: "guest faults",
  flushes: "TLB flushes",
};

const CAUSE_COLOURS: Record<(typeof CYCLE_CAUSES)[number], string> = {
  tlb: "#9ecae1",
  walks: "#3182bd",
  exits: "#e6550d",
  guestFaults: "#fdae6b",
  flushes: "#756bb1",
};

/** 12345678 → "12,345,678". */
export function grouped(n: number): string {
  const s = Math.round(n).toString();
  return s.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

function bytes(n: number): string {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(0)} KiB`;
  return `${n} B`;
}

function percent(x: number): string {
  return `${(x * 100).toFixed(x !== 0 && Math.abs(x) < 0.01 ? 2 : 1)}%`;
}

/** The header lines: what ran, with the seed. */
export function reportTitle(r: SimulationReport): string {
  const parts = [`workload ${r.workload}`];
  if (r.seed !== null) parts.push(`seed ${r.seed}`);
  if (r.scale !== null) parts.push(`scale ${r.scale}`);
  parts.push(`guest ${r.guestPaging}`, `TLB ${r.tlb}`);
  return parts.join(", ");
}

/** The text table. */
export function formatTable(r: SimulationReport): string {
  const cols = [...r.runs.map((x) => x.mmu as string), "native (est.)"];
  const rows: [string, string[]][] = [];
  const n = r.native;
  const row = (label: string, f: (x: RunResult) => string, native = "-") =>
    rows.push([label, [...r.runs.map(f), native]]);
  row("accesses", (x) => grouped(x.accesses), grouped(n.accesses));
  row(
    "TLB miss rate",
    (x) => percent(x.tlbMissRate),
    percent(n.tlbMisses / Math.max(1, n.tlbHits + n.tlbMisses)),
  );
  row("walks", (x) => grouped(x.walks), grouped(n.walks));
  row("refs/walk", (x) => x.refsPerCompletedWalk.toFixed(2), n.refsPerWalk.toFixed(2));
  for (const k of Object.keys(EXIT_LABELS) as (keyof ExitTotals)[])
    if (r.runs.some((x) => x.exits[k] !== 0))
      row(`exits: ${EXIT_LABELS[k]}`, (x) => grouped(x.exits[k]), "0");
  row("VM exits (total)", (x) => grouped(x.exitsTotal), "0");
  row("guest faults", (x) => grouped(x.guestPageFaults), grouped(n.guestPageFaults));
  row("TLB flushes", (x) => grouped(sum(x.tlbFlushes)), grouped(sum(n.tlbFlushes)));
  row("host table bytes", (x) => bytes(x.hostTableBytes));
  row("cycles", (x) => grouped(x.cycles), grouped(n.cycles));
  row("overhead vs native", (x) =>
    x.overheadVsNative === null ? "-" : `${x.overheadVsNative >= 0 ? "+" : ""}${percent(x.overheadVsNative)}`,
  );
  row("digest", (x) => x.digest);
  const w0 = Math.max(...rows.map(([l]) => l.length));
  const ws = cols.map((c, i) => Math.max(c.length, ...rows.map(([, v]) => v[i].length)));
  const line = (label: string, vs: string[]) =>
    `${label.padEnd(w0)}  ${vs.map((v, i) => v.padStart(ws[i])).join("  ")}`.trimEnd();
  const out = [reportTitle(r), "", line("", cols), ...rows.map(([l, v]) => line(l, v))];
  if (!r.digestsAgree) out.push("", "guest digests DIFFER across MMUs");
  return `${out.join("\n")}\n`;
}

function sum(o: Record<string, number>): number {
  let s = 0;
  for (const v of Object.values(o)) s += v;
  return s;
}

/** The JSON document (pretty-printed). */
export function formatJson(r: SimulationReport): string {
  return `${JSON.stringify(r, null, 2)}\n`;
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** A short cycle count: 1234567 → "1.23M". */
function short(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return `${Math.round(n)}`;
}

/** A "nice" axis maximum and step above `max`. */
function axis(max: number): { top: number; step: number } {
  if (max <= 0) return { top: 1, step: 1 };
  const raw = max / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  return { top: Math.ceil(max / step) * step, step };
}

/** A standalone SVG: one stacked bar per MMU (and native), cycles split by cause. */
export function formatSvg(r: SimulationReport): string {
  const bars: { label: string; c: CycleBreakdown; note: string }[] = [
    ...r.runs.map((x) => ({
      label: x.mmu as string,
      c: x.cyclesByCause,
      note:
        x.overheadVsNative === null
          ? ""
          : `${x.overheadVsNative >= 0 ? "+" : ""}${percent(x.overheadVsNative)}`,
    })),
    { label: "native (est.)", c: r.native.cyclesByCause, note: "" },
  ];
  const barW = 64;
  const gap = 36;
  const left = 80;
  const top = 56;
  const plotH = 300;
  const legendW = 150;
  const width = Math.max(720, left + bars.length * (barW + gap) + legendW);
  const height = top + plotH + 70;
  const { top: yMax, step } = axis(Math.max(...bars.map((b) => b.c.total)));
  const y = (v: number) => top + plotH - (v / yMax) * plotH;
  const o: string[] = [];
  o.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<title>${esc(`vmmu simulate: ${reportTitle(r)}`)}</title>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${left}" y="22" font-size="15" font-weight="bold">${esc(`Cycles by cause: ${r.workload}`)}</text>`,
    `<text x="${left}" y="40" fill="#555555" font-size="11">${esc(reportTitle(r))}</text>`,
  );
  for (let v = 0; v <= yMax + step / 2; v += step) {
    const yy = y(v).toFixed(1);
    o.push(
      `<line x1="${left - 4}" y1="${yy}" x2="${left + bars.length * (barW + gap)}" y2="${yy}" stroke="#dddddd"/>`,
      `<text x="${left - 8}" y="${yy}" text-anchor="end" dominant-baseline="middle">${short(v)}</text>`,
    );
  }
  o.push(
    `<text transform="translate(18 ${top + plotH / 2}) rotate(-90)" text-anchor="middle">cycles</text>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}" stroke="#333333"/>`,
  );
  bars.forEach((b, i) => {
    const x = left + gap / 2 + i * (barW + gap);
    let base = 0;
    for (const cause of CYCLE_CAUSES) {
      const v = b.c[cause];
      if (v <= 0) continue;
      const y1 = y(base + v);
      const h = y(base) - y1;
      o.push(
        `<rect x="${x}" y="${y1.toFixed(1)}" width="${barW}" height="${h.toFixed(1)}" fill="${CAUSE_COLOURS[cause]}"><title>${esc(`${b.label}: ${CAUSE_LABELS[cause]} ${grouped(v)} cycles`)}</title></rect>`,
      );
      base += v;
    }
    const cx = x + barW / 2;
    o.push(
      `<text x="${cx}" y="${(y(b.c.total) - 6).toFixed(1)}" text-anchor="middle">${short(b.c.total)}</text>`,
      `<text x="${cx}" y="${top + plotH + 18}" text-anchor="middle" font-weight="bold">${esc(b.label)}</text>`,
    );
    if (b.note)
      o.push(
        `<text x="${cx}" y="${top + plotH + 34}" text-anchor="middle" fill="#555555">${esc(b.note)}</text>`,
      );
  });
  o.push(
    `<line x1="${left}" y1="${top + plotH}" x2="${left + bars.length * (barW + gap)}" y2="${top + plotH}" stroke="#333333"/>`,
  );
  const lx = left + bars.length * (barW + gap) + 16;
  CYCLE_CAUSES.forEach((cause, i) => {
    const ly = top + 8 + i * 22;
    o.push(
      `<rect x="${lx}" y="${ly}" width="14" height="14" fill="${CAUSE_COLOURS[cause]}"/>`,
      `<text x="${lx + 20}" y="${ly + 11}">${esc(CAUSE_LABELS[cause])}</text>`,
    );
  });
  o.push(
    `<text x="${left}" y="${height - 12}" fill="#555555">${esc("overhead vs native under each bar; native is estimated from the TDP run (docs/SIMULATOR.md)")}</text>`,
    "</svg>",
  );
  return `${o.join("\n")}\n`;
}
