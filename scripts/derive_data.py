"""Derive the small data corral carries inside its package from the public traces.

Run from the project root with the shared data checked out beside it:

    python scripts/derive_data.py [--shared ../shared/data]

Writes into src/corral/data/:
- philly_pollux.csv.gz: the Philly trace (Microsoft, ATC'19, CC-BY 4.0) as reduced by the
  Pollux OSDI'21 artifact (Apache-2.0), byte-for-byte, gzip-compressed;
- philly_vc_nodes.csv: node count per Philly VC from the Helios artifact
  (S-Lab-System-Group/HeliosArtifact), copied;
- philly_shape.json: the job-size histogram and 201 duration quantiles of that trace, from
  which `corral workload synth` draws Philly-like jobs.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "src" / "corral" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default="../shared/data", type=Path)
    args = parser.parse_args()
    traces = args.shared / "traces"
    OUT.mkdir(parents=True, exist_ok=True)
    raw = (traces / "philly_pollux.csv").read_bytes()
    # mtime=0 keeps the compressed bytes identical from run to run.
    with gzip.GzipFile(OUT / "philly_pollux.csv.gz", "wb", mtime=0) as out:
        out.write(raw)
    shutil.copyfile(traces / "philly_vc_nodes.csv", OUT / "philly_vc_nodes.csv")
    rows = list(csv.DictReader(raw.decode().splitlines()))
    sizes = Counter(int(float(r["num_gpus"])) for r in rows)
    durations = np.array([float(r["duration"]) for r in rows])
    shape = {
        "source": "Philly trace (ATC'19) as reduced by the Pollux OSDI'21 artifact",
        "jobs": len(rows),
        "gpus_histogram": {str(k): v for k, v in sorted(sizes.items())},
        "duration_quantiles_s": [float(q) for q in np.quantile(durations, np.linspace(0, 1, 201))],
    }
    (OUT / "philly_shape.json").write_text(json.dumps(shape, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
