"""Derive the small data corral carries inside its package from the public traces.

Run from the project root with the shared data checked out beside it:

    python scripts/derive_data.py [--shared ../shared/data]

Writes into src/corral/data/:
- philly_pollux.csv.gz: the Philly trace (Microsoft, ATC'19, CC-BY 4.0) as reduced by the
  Pollux OSDI'21 artifact (Apache-2.0), byte-for-byte, gzip-compressed;
- philly_vc_nodes.csv: node count per Philly VC from the Helios artifact
  (S-Lab-System-Group/HeliosArtifact), copied;
- philly_shape.json: the job-size histogram and 201 duration quantiles of that trace, from
  which `corral workload synth` draws Philly-like jobs;
- serving_shapes.json: the Azure LLM traces' 5-minute request counts and mean tokens, and
  the GPUs of Alibaba's DLRM serving instances per hour;
- azure_llm_conv_requests.csv.gz: the Azure LLM conversation trace's requests (Azure
  AzurePublicDataset AzureLLMInferenceDataset2023, CC-BY 4.0) as seconds from the first,
  context and generated tokens: what the live capacity run replays (scripts/capacity_live.py).
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
    serving = {"llm": {k: llm_shape(traces / f"azure_llm_{k}_2023.csv") for k in ("code", "conv")}}
    serving["dlrm_gpus_hourly"] = dlrm_hourly(traces / "alibaba2025_dlrm.csv")
    serving["source"] = (
        "Azure LLM inference traces 2023 (AzurePublicDataset, CC-BY 4.0); "
        "Alibaba cluster-trace-gpu-v2025 DLRM instances (alibaba/clusterdata)"
    )
    (OUT / "serving_shapes.json").write_text(json.dumps(serving, indent=1) + "\n")
    llm_requests(traces / "azure_llm_conv_2023.csv", OUT / "azure_llm_conv_requests.csv.gz")
    print(f"wrote {OUT}")


def llm_requests(path: Path, out: Path) -> None:
    """Each request of the trace: offset_s from the first (ms precision), context_tokens,
    generated_tokens, in the trace's order."""
    from datetime import datetime

    rows = list(csv.DictReader(path.open()))
    times = [datetime.fromisoformat(r["TIMESTAMP"][:26]) for r in rows]
    start = min(times)
    lines = ["offset_s,context_tokens,generated_tokens"]
    for t, r in zip(times, rows, strict=True):
        offset = (t - start).total_seconds()
        lines.append(f"{offset:.3f},{int(r['ContextTokens'])},{int(r['GeneratedTokens'])}")
    with gzip.GzipFile(out, "wb", mtime=0) as handle:
        handle.write(("\n".join(lines) + "\n").encode())


def llm_shape(path: Path) -> dict:
    """Requests per 5 minutes over the trace's hour, and mean tokens per request."""
    from datetime import datetime

    rows = list(csv.DictReader(path.open()))
    times = [datetime.fromisoformat(r["TIMESTAMP"][:26]) for r in rows]
    start = min(times)
    bins = Counter(int((t - start).total_seconds() // 300) for t in times)
    return {
        "requests": len(rows),
        "span_s": (max(times) - start).total_seconds(),
        "requests_per_5min": [bins.get(i, 0) for i in range(max(bins) + 1)],
        "mean_context_tokens": float(np.mean([int(r["ContextTokens"]) for r in rows])),
        "mean_generated_tokens": float(np.mean([int(r["GeneratedTokens"]) for r in rows])),
    }


def dlrm_hourly(path: Path) -> list[int]:
    """GPUs requested by instances alive at each hour (NaN times: alive from the start or
    to the end of the window)."""
    rows = list(csv.DictReader(path.open()))

    def time(value: str, missing: float) -> float:
        return float(value) if value not in ("", "nan", "NaN") else missing

    gpus = np.array([float(r["gpu_request"]) for r in rows])
    born = np.array([time(r["creation_time"], -np.inf) for r in rows])
    gone = np.array([time(r["deletion_time"], np.inf) for r in rows])
    end = max(np.max(born[np.isfinite(born)]), np.max(gone[np.isfinite(gone)]))
    return [int(gpus[(born <= t) & (gone > t)].sum()) for t in np.arange(0.0, end, 3600.0)]


if __name__ == "__main__":
    main()
