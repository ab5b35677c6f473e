/** The kernel's physical layout and per-mode harness entries (conformance/kernel/layout.json). */

import { readFileSync } from "node:fs";

export type ModeNumber = 0 | 1 | 2 | 3;
export const MODE_NAMES = ["32bit", "pae", "4level", "5level"] as const;

interface LayoutJson {
  physical: Record<string, number>;
  harnessPkey: number;
  kernels: Record<string, string>;
  modes: Record<string, { entrySize: number; root: { entries: { index: number; value: number }[] } }>;
}

const json = JSON.parse(
  readFileSync(new URL("../kernel/layout.json", import.meta.url), "utf8"),
) as LayoutJson;

export const LAYOUT = {
  dataPage: json.physical.dataPage,
  codePage: json.physical.codePage,
  scratchBase: json.physical.scratchBase,
  scratchLimit: json.physical.scratchLimit,
  ramLimit: json.physical.ramLimit,
  harnessPkey: json.harnessPkey,
  entrySize: (m: ModeNumber) => json.modes[m].entrySize as 4 | 8,
  /** The entries every case root must hold (root index → value). */
  rootEntries: (m: ModeNumber) => json.modes[m].root.entries,
};
