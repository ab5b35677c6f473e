"""Minimal Python encoder for vmmu kernel case batches (see ../FORMAT.md).

Only used by the hand-written self-test; the real generator is the
TypeScript runner. Reads every address from ../layout.json.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
LAYOUT = json.load(open(os.path.join(HERE, "..", "layout.json")))
PHYS = LAYOUT["physical"]
DATA_PAGE = PHYS["dataPage"]
CODE_PAGE = PHYS["codePage"]
SCRATCH = PHYS["scratchBase"]

# flags (FORMAT.md "Case record")
WP, PSE, SMEP, SMAP, PKE, PKS, NXE, AC, CPL3 = (1 << i for i in range(9))
READ, WRITE, FETCH = 0 << 9, 1 << 9, 2 << 9

# entry bits
P, RW, US, PWT, PCD, A, D, PS = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80
XD = 1 << 63

# per mode: list of (shift, index bits) from the root down; entry size
LEVELS = {
    0: [(22, 10), (12, 10)],
    1: [(30, 2), (21, 9), (12, 9)],
    2: [(39, 9), (30, 9), (21, 9), (12, 9)],
    3: [(48, 9), (39, 9), (30, 9), (21, 9), (12, 9)],
}
ESIZE = {0: 4, 1: 8, 2: 8, 3: 8}


def pkey(k):
    return k << 59


class Case:
    """One case: a private set of page tables in the scratch area."""

    def __init__(self, mode, flags=0, va=0, pkru=0, pkrs=0):
        self.mode, self.flags, self.va, self.pkru, self.pkrs = mode, flags, va, pkru, pkrs
        self.next_page = SCRATCH
        self.tables = {}  # table pa -> {index: value}
        self.extra_writes = []
        self.watches = []
        m = LAYOUT["modes"][str(mode)]
        self.harness_tables = {c["address"]: {e["index"]: e["value"] for e in c["entries"]} for c in m["chain"]}
        self.root = self.alloc()
        for e in m["root"]["entries"]:  # the harness entries every root needs
            self.tables[self.root][e["index"]] = e["value"]
        self.cr3 = self.root

    def alloc(self):
        pa = self.next_page
        self.next_page += 0x1000
        self.tables[pa] = {}
        return pa

    def entry_pa(self, table, index):
        return table + index * ESIZE[self.mode]

    def map(self, va, pa, leaf_depth=None, leaf=P | RW | US, upper=P | RW | US):
        """Map va -> pa with the leaf at depth leaf_depth (default: 4 KiB
        level). Returns the list of entry addresses, root first. Descending
        through a harness entry clones the harness table (FORMAT.md rule)."""
        levels = LEVELS[self.mode]
        if leaf_depth is None:
            leaf_depth = len(levels) - 1
        table, path = self.root, []
        for depth, (shift, bits) in enumerate(levels):
            idx = (va >> shift) & ((1 << bits) - 1)
            path.append(self.entry_pa(table, idx))
            if depth == leaf_depth:
                large = depth != len(levels) - 1
                self.tables[table][idx] = pa | leaf | (PS if large else 0)
                return path
            cur = self.tables[table].get(idx)
            up = P if (self.mode == 1 and depth == 0) else upper  # PAE PDPTE: only P
            if cur is None:
                nt = self.alloc()
                self.tables[table][idx] = nt | up
            elif (cur & ~0xFFF) in self.harness_tables:  # clone a harness chain table
                nt = self.alloc()
                self.tables[nt] = dict(self.harness_tables[cur & ~0xFFF])
                self.tables[table][idx] = nt | (cur & 0xFFF)
            else:
                nt = cur & 0x000FFFFFFFFFF000
                assert nt in self.tables, "descending into a leaf"
            table = nt

    def set_entry(self, entry_pa, value):
        table = entry_pa & ~0xFFF
        self.tables[table][(entry_pa & 0xFFF) // ESIZE[self.mode]] = value

    def get_entry(self, entry_pa):
        table = entry_pa & ~0xFFF
        return self.tables[table][(entry_pa & 0xFFF) // ESIZE[self.mode]]

    def watch(self, entry_pa):
        self.watches.append((entry_pa, ESIZE[self.mode]))

    def encode(self):
        es = ESIZE[self.mode]
        zero = sorted(self.tables)
        writes = [(t + i * es, v, es) for t in zero for i, v in sorted(self.tables[t].items())]
        writes += self.extra_writes
        body = struct.pack("<IIIQQ", self.flags, self.pkru, self.pkrs, self.cr3, self.va)
        body += struct.pack("<I", len(zero)) + b"".join(struct.pack("<Q", z) for z in zero)
        body += struct.pack("<I", len(writes)) + b"".join(struct.pack("<QQII", a, v, s, 0) for a, v, s in writes)
        body += struct.pack("<I", len(self.watches)) + b"".join(struct.pack("<QII", a, s, 0) for a, s in self.watches)
        size = 4 + len(body)
        pad = (-size) % 8
        return struct.pack("<I", size + pad) + body + b"\0" * pad


def encode_batch(mode, records):
    """records: list of encoded case records (bytes)."""
    hdr = b"VMMUCASE" + struct.pack("<IIIIII", 1, mode, len(records), 32, 0, 0)
    return hdr + b"".join(records)


def parse_output(text):
    """Returns (header dict, {index: (vec, err, cr2, [watch values])}, end count or None)."""
    lines = text.splitlines()
    header, results, end = {}, {}, None
    for ln in lines:
        f = ln.split()
        if not f:
            continue
        if f[0] == "VMMU-KERNEL":
            header = dict(kv.split("=") for kv in f[2:])
        elif f[0] == "C":
            results[int(f[1])] = (f[2], f[3], f[4], [int(x, 16) for x in f[5:]])
        elif f[0] == "END":
            end = int(f[1])
    return header, results, end
