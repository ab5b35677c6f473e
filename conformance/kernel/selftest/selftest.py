#!/usr/bin/env python3
"""Hand-written self-test for the vmmu conformance kernel.

Builds a handful of cases per paging mode, runs them through
../run-batch.sh, and checks each result against the value the Intel SDM
(Vol. 3A chapter 4 "Paging") prescribes, or QEMU 7.2's documented departure
(/work/shared/EMULATORS.md) where one applies. Also checks that layout.json
matches src/layout.h.

usage: selftest.py [--perf N] [--keep DIR]
  --perf N   also time a batch of N cases per mode (duplicated test cases)
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

from vmmucase import (A, AC, CODE_PAGE, CPL3, D, DATA_PAGE, FETCH, LAYOUT, NXE, P, PKE, PKS, PSE, READ, RW,
                      SMAP, SMEP, US, WP, WRITE, XD, Case, encode_batch, parse_output, pkey)

HERE = os.path.dirname(os.path.abspath(__file__))
KDIR = os.path.dirname(HERE)

# A case linear address per mode, outside the harness region (root index != 0).
VA = {0: 0x12345123, 1: 0x52345123, 2: 0x0000123456789123, 3: 0x00FF123456789123}
NONCANON = {2: 0x0000800000000123, 3: 0x0100000000000123}
LOW_VA = 0x00812345  # root index 0, outside the harness 0..4 MiB: needs cloned harness tables

PF, GP = "14", "13"
OK = ("-", "-", "-")


def pf(err, va):
    return (PF, "%x" % err, "%x" % va)


def tests(mode):
    """Yields (name, case, expected (vec, err, cr2), expected watches, note)."""
    va = VA[mode]
    ia32e = mode >= 2

    def basic(flags, leaf=P | RW | US, page=DATA_PAGE, v=va, depth=None, upper=P | RW | US):
        c = Case(mode, flags=flags, va=v)
        path = c.map(v & ~0xFFF if depth is None else v, page, depth, leaf, upper)
        return c, path

    # 1. read, 4 KiB page: A set in leaf and parent (SDM 4.8), root too (QEMU also sets A in PAE PDPTEs: departure 3)
    c, path = basic(WP | READ)
    for e in (path[0], path[-2], path[-1]):
        c.watch(e)
    exp_root = c.get_entry(path[0]) | A
    note = "root A in a PAE PDPTE is QEMU departure 3 (SDM: PDPTE has no A bit)" if mode == 1 else ""
    yield "read 4K ok", c, OK, [exp_root, c.get_entry(path[-2]) | A, c.get_entry(path[-1]) | A], note

    # 2. write sets D (SDM 4.8)
    c, path = basic(WP | WRITE)
    c.watch(path[-1])
    yield "write sets D", c, OK, [c.get_entry(path[-1]) | A | D], ""

    # 3. not-present leaf: #PF P=0; A set above (QEMU implementation choice), not in leaf (SDM 4.7)
    c, path = basic(WP | READ, leaf=RW | US)
    c.watch(path[-2]); c.watch(path[-1])
    yield "not present", c, pf(0x0, va), [c.get_entry(path[-2]) | A, c.get_entry(path[-1])], ""

    # 4. CPL3 read of a supervisor page: #PF P|U (SDM 4.6.1)
    c, path = basic(WP | READ | CPL3, leaf=P | RW)
    c.watch(path[-1])
    yield "user read of supervisor page", c, pf(0x5, va), [c.get_entry(path[-1])], ""

    # 5. non-canonical address: #GP(0), no walk (SDM 3.3.7.1)
    if ia32e:
        c, path = basic(WP | READ)
        c.va = NONCANON[mode]
        c.watch(path[0])
        yield "non-canonical read", c, (GP, "0", "-"), [c.get_entry(path[0])], ""

    # 6. reserved bit in the leaf: #PF RSVD (SDM 4.7: P=1 too; QEMU departure 1 reports P=0)
    if mode == 0:
        # 4 MiB page, PSE-36 with MAXPHYADDR 40: PDE bit 21 is reserved (SDM 4.3, table 4-4)
        c, path = basic(WP | PSE | READ, leaf=P | RW | US | (1 << 21), page=0x00400000, v=va, depth=0)
        c.va = va
    else:
        c, path = basic(WP | READ, leaf=P | RW | US | (1 << 51))  # bit 51 >= MAXPHYADDR
    c.watch(path[-1])
    yield "reserved bit", c, pf(0x8, va), [c.get_entry(path[-1])], "SDM err 0x9; QEMU departure 1 gives 0x8"

    # 7. fetch from an XD page with EFER.NXE = 1: #PF P|I/D (SDM 4.6.2)
    if mode >= 1:
        c, path = basic(WP | NXE | FETCH, leaf=P | RW | XD, page=CODE_PAGE)
        c.watch(path[-1])
        yield "NX fetch", c, pf(0x11, va), [c.get_entry(path[-1])], ""
        c, path = basic(WP | FETCH, leaf=P | RW | (1 << 63), page=CODE_PAGE)
        c.watch(path[-1])
        yield "XD bit without NXE is reserved", c, pf(0x8, va), [c.get_entry(path[-1])], "SDM err 0x9 (departure 1)"

    # 8. SMEP: CPL0 fetch from a user page (SDM 4.6.1, I/D set because SMEP=1)
    c, path = basic(WP | SMEP | FETCH, page=CODE_PAGE)
    c.watch(path[-1])
    yield "SMEP fetch", c, pf(0x11, va), [c.get_entry(path[-1])], ""

    # 9. SMAP: CPL0 read of a user page, AC=0 faults, AC=1 allowed (SDM 4.6.1)
    c, path = basic(WP | SMAP | READ)
    c.watch(path[-1])
    yield "SMAP read AC=0", c, pf(0x1, va), [c.get_entry(path[-1])], ""
    c, path = basic(WP | SMAP | AC | READ)
    c.watch(path[-1])
    yield "SMAP read AC=1", c, OK, [c.get_entry(path[-1]) | A], ""

    # 10. protection keys (IA-32e only, SDM 4.6.2)
    if ia32e:
        c, path = basic(WP | PKE | CPL3 | READ, leaf=P | RW | US | pkey(1))
        c.pkru = 1 << 2  # AD for key 1
        c.watch(path[-1])
        yield "PKRU AD read CPL3", c, pf(0x25, va), [c.get_entry(path[-1])], ""
        c, path = basic(WP | PKE | CPL3 | READ, leaf=P | RW | US | pkey(1))
        c.pkru = 1 << 3  # WD only: reads allowed
        c.watch(path[-1])
        yield "PKRU WD read CPL3 ok", c, OK, [c.get_entry(path[-1]) | A], ""
        c, path = basic(WP | PKS | READ, leaf=P | RW | pkey(2))
        c.pkrs = 1 << 4  # AD for key 2
        c.watch(path[-1])
        yield "PKRS AD read CPL0", c, pf(0x21, va), [c.get_entry(path[-1])], ""

    # 11. CR0.WP: supervisor write to a read-only page (SDM 4.6.1)
    c, path = basic(WP | WRITE, leaf=P)
    c.watch(path[-1])
    yield "WP=1 write read-only", c, pf(0x3, va), [c.get_entry(path[-1])], ""
    c, path = basic(WRITE, leaf=P)
    c.watch(path[-1])
    yield "WP=0 write read-only ok", c, OK, [c.get_entry(path[-1]) | A | D], ""

    # 12. fetches that complete: 4 KiB, large leaves, CPL3
    c, path = basic(WP | FETCH, page=CODE_PAGE)
    c.watch(path[-1])
    yield "fetch 4K ok", c, OK, [c.get_entry(path[-1]) | A], ""
    big = {0: [(0, 22, PSE, "4M")], 1: [(1, 21, 0, "2M")], 2: [(2, 21, 0, "2M"), (1, 30, 0, "1G")],
           3: [(3, 21, 0, "2M"), (2, 30, 0, "1G")]}[mode]
    for depth, shift, extra, nm in big:
        base = CODE_PAGE & ~((1 << shift) - 1)
        v = (va & ~((1 << shift) - 1)) | (CODE_PAGE - base) | 0x7F
        c = Case(mode, flags=WP | extra | FETCH, va=v)
        path = c.map(v & ~((1 << shift) - 1), base, depth, P | RW | US)
        c.watch(path[-1])
        yield "fetch %s leaf ok" % nm, c, OK, [c.get_entry(path[-1]) | A], ""
    c, path = basic(WP | FETCH | CPL3, page=CODE_PAGE)
    c.watch(path[-1])
    yield "CPL3 fetch ok", c, OK, [c.get_entry(path[-1]) | A], ""
    # I/D is reported only with SMEP=1 or (PAE/IA-32e and NXE=1) (SDM 4.7)
    c, path = basic(WP | FETCH | CPL3, leaf=P | RW, page=CODE_PAGE)
    c.watch(path[-1])
    yield "CPL3 fetch supervisor page", c, pf(0x5, va), [c.get_entry(path[-1])], "NXE=0, SMEP=0: I/D is 0"
    if mode >= 1:
        c, path = basic(WP | NXE | FETCH | CPL3, leaf=P | RW, page=CODE_PAGE)
        c.watch(path[-1])
        yield "CPL3 fetch supervisor page NXE", c, pf(0x15, va), [c.get_entry(path[-1])], ""
    c, path = basic(WP | WRITE | CPL3)
    c.watch(path[-1])
    yield "CPL3 write ok", c, OK, [c.get_entry(path[-1]) | A | D], ""

    # 13. a VA under root index 0 (tables cloned from the harness chain)
    if mode >= 1:
        c = Case(mode, flags=WP | READ, va=LOW_VA)
        path = c.map(LOW_VA & ~0xFFF, DATA_PAGE)
        c.watch(path[-1])
        yield "root[0] region read (cloned harness tables)", c, OK, [c.get_entry(path[-1]) | A], ""

    # 14. harness robustness: PK registers denying everything the harness allows
    if ia32e:
        c, path = basic(WP | PKS | READ, leaf=P | RW | pkey(0))
        c.pkrs = 0x3FFFFFFF  # every key but 15 (the harness key) access-disabled
        c.watch(path[-1])
        yield "PKRS deny keys 0-14, CPL0 read key 0", c, pf(0x21, va), [c.get_entry(path[-1])], ""
        c, path = basic(WP | PKE | CPL3 | FETCH, page=CODE_PAGE)
        c.pkru = 0xFFFFFFFF  # fetches are not subject to PKRU (SDM 4.6.2)
        c.watch(path[-1])
        yield "PKRU deny all, CPL3 fetch ok", c, OK, [c.get_entry(path[-1]) | A], ""
        c, path = basic(WP | PKE | CPL3 | WRITE)
        c.pkru = 0xFFFFFFFF
        c.watch(path[-1])
        yield "PKRU deny all, CPL3 write", c, pf(0x27, va), [c.get_entry(path[-1])], ""
    else:
        # protection keys apply only to 4-/5-level paging (SDM 4.6.2)
        c, path = basic(WP | PKE | PKS | CPL3 | READ)
        c.pkru = c.pkrs = 0xFFFFFFFF
        c.watch(path[-1])
        yield "PKE+PKS in legacy paging: no effect", c, OK, [c.get_entry(path[-1]) | A], ""


def run(mode, records, tmp):
    batch = os.path.join(tmp, "mode%d.bin" % mode)
    out = os.path.join(tmp, "mode%d.out" % mode)
    with open(batch, "wb") as f:
        f.write(encode_batch(mode, records))
    t0 = time.time()
    rc = subprocess.call([os.path.join(KDIR, "run-batch.sh"), os.path.join(KDIR, "build"), batch, out])
    dt = time.time() - t0
    return rc, open(out).read(), dt


def check_layout():
    h = {}
    for line in open(os.path.join(KDIR, "src", "layout.h")):
        m = re.match(r"#define (\w+)\s+(0x[0-9A-Fa-f]+|\d+)", line)
        if m:
            h[m.group(1)] = int(m.group(2), 0)
    P_ = LAYOUT["physical"]
    for j, c in [("userStub", "USER_STUB"), ("userStack", "USER_STACK"), ("dataPage", "DATA_PAGE"),
                 ("codePage", "CODE_PAGE"), ("scratchBase", "SCRATCH_BASE"), ("scratchLimit", "SCRATCH_LIMIT"),
                 ("batchAddr", "BATCH_ADDR"), ("ramLimit", "RAM_LIMIT"), ("kernelBase", "KERNEL_BASE")]:
        assert P_[j] == h[c], (j, c)
    m = LAYOUT["modes"]
    assert m["0"]["root"]["entries"][0]["value"] == h["M0_PT"] | 0x27
    assert m["1"]["root"]["entries"][0]["value"] == h["M1_PD"] | 0x1
    assert m["2"]["root"]["entries"][0]["value"] == h["M2_PDPT"] | 0x27
    assert m["3"]["root"]["entries"][0]["value"] == h["M2_PML4"] | 0x27
    assert m["3"]["chain"][-1]["entries"][1]["value"] == h["M2_PT1"] | 0x27


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--perf", type=int, default=0)
    ap.add_argument("--keep")
    ap.add_argument("--modes", default="0,1,2,3")
    args = ap.parse_args()
    check_layout()
    tmp = args.keep or tempfile.mkdtemp(prefix="vmmu-kernel-")
    os.makedirs(tmp, exist_ok=True)
    failures = total = 0
    for mode in map(int, args.modes.split(",")):
        ts = list(tests(mode))
        rc, text, dt = run(mode, [t[1].encode() for t in ts], tmp)
        hdr, res, end = parse_output(text)
        print("mode %d: %d cases, rc=%d, %.2fs, header %s" % (mode, len(ts), rc, dt, hdr))
        if rc != 0 or end != len(ts):
            print("  BATCH FAILED (rc=%d end=%s)\n%s" % (rc, end, text))
            failures += 1
        for i, (name, c, exp, expw, note) in enumerate(ts):
            total += 1
            got = res.get(i)
            want = (exp[0], exp[1], exp[2], expw)
            ok = got is not None and tuple(got) == want
            failures += not ok
            fmt = lambda r: "missing" if r is None else "%s %s %s [%s]" % (r[0], r[1], r[2], " ".join("%x" % w for w in r[3]))
            print("  %-4s %-44s got %s%s" % ("ok" if ok else "FAIL", name, fmt(got),
                                            "" if ok else "  want " + fmt(want)) + ("   (" + note + ")" if note else ""))
        if args.perf:
            recs = [t[1].encode() for t in ts]
            recs = (recs * (args.perf // len(recs) + 1))[: args.perf]
            rc, text, dt = run(mode, recs, tmp)
            hdr, res, end = parse_output(text)
            want = [tuple(t[2]) + (t[3],) for t in ts]
            bad = sum(1 for i in range(len(recs)) if res.get(i) is None or tuple(res[i]) != want[i % len(ts)])
            print("  perf: %d cases in %.2fs wall (incl. boot) = %.0f cases/s, rc=%d, mismatches=%d"
                  % (len(recs), dt, len(recs) / dt, rc, bad))
            failures += (rc != 0) + (bad != 0)
    # The kernel refuses a CR3 with bits >= MAXPHYADDR in IA-32e modes (QEMU hangs on it).
    c = Case(2, flags=WP | READ, va=VA[2])
    c.map(VA[2] & ~0xFFF, DATA_PAGE)
    c.cr3 |= 1 << 45
    rc, text, dt = run(2, [c.encode()], tmp)
    ok = rc == 2 and "ERR C 0 cr3-reserved-bits-hang-qemu" in text
    total += 1
    failures += not ok
    print("%-4s refusal of CR3 bits >= MAXPHYADDR: rc=%d %.2fs %r" % ("ok" if ok else "FAIL", rc, dt, text.splitlines()[-1:]))
    print("%d checks, %d failures" % (total, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
