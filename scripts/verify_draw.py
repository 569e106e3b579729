#!/usr/bin/env python3
"""Recompute a Catraca pre-queue draw (docs/DESIGN.md, "A fair pre-queue"; the same lines).

usage: python3 scripts/verify_draw.py SEED SEED_SHA256 < ids.txt
SEED and SEED_SHA256 are the event view's draw.seed and draw.seed_sha256; ids.txt holds the
pre-queue's purchase ids ("p_..."), one a line, in any order. Prints them in the draw's order.
"""
import hashlib, sys
seed_hex, commitment = sys.argv[1], sys.argv[2]           # draw.seed, draw.seed_sha256
seed = bytes.fromhex(seed_hex)
if hashlib.sha256(seed).hexdigest() != commitment.lower():
    sys.exit("the seed does not hash to the published SHA-256: not the committed draw")
ids = [line.strip() for line in sys.stdin if line.strip()]  # the pre-queue's ids, any order
for pid in sorted(ids, key=lambda pid: hashlib.sha256(seed + pid.encode("ascii")).digest()):
    print(pid)
