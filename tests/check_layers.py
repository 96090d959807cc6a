#!/usr/bin/env python3
"""Fails on any #include that points up the layer order of src/ (README, "How it works").

Each folder of src/ sits on one layer; a file may include headers of its own folder and
of folders on lower layers, and the public API (include/itscam). Subfolders belong to
their top folder (backend/cpu is "backend"). Folders not yet written keep their slot so
the order is fixed before the code arrives.
Usage: check_layers.py SRC_DIR [--list]
"""
import os
import re
import sys

# Lowest first. Data flows camera -> decode -> schedule -> infer -> postprocess -> track
# -> analytics -> sinks; the pipeline ties a camera's stages together; the server sits above everything it serves, the CLI above all.
LAYERS = ["core", "graph", "onnx", "backend", "runtime", "vision", "detect", "sched",
          "stream", "track", "analytics", "sinks", "pipeline", "server", "cli"]
RANK = {name: i for i, name in enumerate(LAYERS)}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
    bad, seen, edges = [], 0, set()
    for root, _, files in os.walk(src):
        for f in sorted(files):
            if not f.endswith((".c", ".h", ".cu", ".cuh")):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, src)
            top = rel.split(os.sep)[0]
            if top not in RANK:
                bad.append("%s: folder '%s' has no layer; add it to LAYERS in %s" % (rel, top, __file__))
                continue
            with open(path, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
            for m in INCLUDE.finditer(text):
                inc = m.group(1)
                seen += 1
                itop = inc.split("/")[0]
                if itop == "itscam" or "/" not in inc:
                    continue  # the public API; same-directory includes
                if itop not in RANK:
                    bad.append("%s:%d: includes \"%s\" from no known layer" %
                               (rel, text.count("\n", 0, m.start()) + 1, inc))
                    continue
                if itop != top:
                    edges.add((top, itop))
                if RANK[itop] > RANK[top]:
                    bad.append("%s:%d: includes \"%s\": %s (layer %d) may not include %s (layer %d)" %
                               (rel, text.count("\n", 0, m.start()) + 1, inc, top, RANK[top], itop, RANK[itop]))
    print("layers: " + " -> ".join(LAYERS))
    if "--list" in sys.argv:
        for a, b in sorted(edges, key=lambda e: (RANK[e[0]], RANK[e[1]])):
            print("  %s -> %s" % (a, b))
    if bad:
        print("%d upward include(s):" % len(bad))
        for b in bad:
            print("  " + b)
        return 1
    print("%d includes checked, none points up" % seen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
