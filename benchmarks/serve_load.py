"""Load on ``scratchrnn serve``: aggregate characters/s and request latency for 1, 8, 32 and 128 concurrent
clients, side by side against one server process, on 127.0.0.1 only.

Each client sends ``/v1/completions`` requests one after another (``--chars`` characters at temperature
1, its own seed each time, not streamed) until it has sent ``--requests`` or the level's ``--seconds``
have passed; each level starts once the previous one has ended. Characters/s is every completed
request's characters over the level's wall time; the latencies are those of single requests, from
sending to the last byte. The issue's goal: 32 clients get at least 8x the characters/s of one.

The model is the chapter's (one RNN layer of 512 units over the 28 characters of the chapter's cleaning
of The Time Machine) with weights drawn by ``init_params`` unless ``--run`` names a trained run: the
weights change the text, not the work. The server runs in a process of its own (``scratchrnn serve``),
the clients here on asyncio with httpx.

    .venv/bin/python benchmarks/serve_load.py                        # about 2 minutes on 2 cores
    .venv/bin/python benchmarks/serve_load.py --quick                # a smoke test, seconds
    .venv/bin/python benchmarks/serve_load.py --name serve-load-amd-epyc-zen3   # into benchmarks/results/
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
LEVELS = (1, 8, 32, 128)


def cpu_name() -> str:
    """The CPU's name, with its family and model (a virtual machine may name only the vendor's line)."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or "unknown"
    name, family, model = (fields.get(key, "?") for key in ("model name", "cpu family", "model"))
    return f"{name} (family {family} model {model})"


def chapter_run(directory: Path) -> Path:
    """A checkpoint of the chapter's model shape, with weights from init_params."""
    from scratchrnn.checkpoint import Checkpoint, save_checkpoint
    from scratchrnn.data import load_corpus
    from scratchrnn.model import ModelConfig, init_params

    _, vocab = load_corpus(None, 10000)
    config = ModelConfig(vocab_size=len(vocab), num_hiddens=512)
    path = directory / "chapter"
    save_checkpoint(path, Checkpoint(init_params(config, seed=0), vocab, config, "chapter", "char"))
    return path


def start_server(run: Path, max_streams: int) -> tuple[subprocess.Popen, str, str]:
    proc = subprocess.Popen([sys.executable, "-m", "scratchrnn", "serve", str(run), "--port", "0", "--max-streams",
                             str(max_streams)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if " at http://127.0.0.1:" not in line:
        proc.kill()
        raise SystemExit(f"the server did not start: {line}{proc.stderr.read()}")
    url = line.split(" at ")[1].split()[0].rstrip("/")
    model = httpx.get(f"{url}/v1/models", timeout=30).json()["data"][0]["id"]
    return proc, url, model


async def client(http: httpx.AsyncClient, url: str, model: str, prompt: str, chars: int, seeds, deadline: float,
                 latencies: list, counts: list) -> None:
    for seed in seeds:
        if time.perf_counter() > deadline:
            return
        body = {"model": model, "prompt": prompt, "max_tokens": chars, "temperature": 1.0, "seed": seed}
        started = time.perf_counter()
        response = await http.post(f"{url}/v1/completions", json=body)
        response.raise_for_status()
        latencies.append(time.perf_counter() - started)
        counts.append(len(response.json()["choices"][0]["text"]))


async def level(url: str, model: str, clients: int, requests: int, chars: int, seconds: float, prompt: str) -> dict:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=httpx.Timeout(seconds + 120), limits=limits) as http:
        latencies, counts = [], []
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(client(http, url, model, prompt, chars, range(k * 1000, k * 1000 + requests),
                                      deadline, latencies, counts) for k in range(clients)))
        wall = time.perf_counter() - started
    return {"clients": clients, "requests": len(latencies), "characters": int(sum(counts)), "seconds": round(wall, 3),
            "chars_per_sec": round(sum(counts) / wall, 1),
            "latency_p50_s": round(float(np.percentile(latencies, 50)), 4),
            "latency_p99_s": round(float(np.percentile(latencies, 99)), 4)}


def markdown(record: dict) -> str:
    rows = "\n".join(f"| {r['clients']} | {r['requests']} | {r['chars_per_sec']:,.0f} | {r['latency_p50_s']:.3f} | "
                     f"{r['latency_p99_s']:.3f} | {r['chars_per_sec'] / record['levels'][0]['chars_per_sec']:.1f}x |"
                     for r in record["levels"])
    return (f"# scratchrnn serve under load\n\n"
            f"CPU: {record['cpu']} ({record['cpus']} logical CPUs); load average before / after: "
            f"{record['load_before']} / {record['load_after']} (the machine was shared: compare the ratios, "
            f"measured side by side, more than the absolute numbers).\n"
            f"Model: {record['model']}. Each request: {record['chars']} characters at temperature 1, not streamed.\n"
            f"Command: `{record['command']}`\n\n"
            f"| clients | requests | characters/s | p50 latency (s) | p99 latency (s) | vs 1 client |\n"
            f"|---:|---:|---:|---:|---:|---:|\n{rows}\n\n"
            f"Goal (issue 25): 32 clients >= 8x the characters/s of one: {record['ratio_32_to_1']:.1f}x.\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a trained run to serve (default: the chapter's model, untrained weights)")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="concurrent clients, comma-separated")
    parser.add_argument("--chars", type=int, default=1000, help="characters each request asks for")
    parser.add_argument("--requests", type=int, default=4, help="requests each client sends at most")
    parser.add_argument("--seconds", type=float, default=30.0, help="at most this long per level")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 100 characters, 1 request, 5 s a level")
    parser.add_argument("--name", help="write benchmarks/results/NAME.json and NAME.md")
    args = parser.parse_args()
    if args.quick:
        args.chars, args.requests, args.seconds = 100, 1, 5.0
    levels = [int(v) for v in args.levels.split(",")]
    with tempfile.TemporaryDirectory() as temporary:
        run = Path(args.run) if args.run else chapter_run(Path(temporary))
        server, url, model = start_server(run, max(levels))
        try:
            load_before = [round(v, 2) for v in os.getloadavg()]
            # one request first, so that the first level does not pay for the server's warming up
            asyncio.run(level(url, model, 1, 1, 50, 30, "time traveller"))
            results = []
            for clients in levels:
                results.append(asyncio.run(level(url, model, clients, args.requests, args.chars, args.seconds,
                                                 "time traveller")))
                print(json.dumps(results[-1]), flush=True)
            load_after = [round(v, 2) for v in os.getloadavg()]
        finally:
            server.terminate()
            server.wait(timeout=30)
    by_clients = {r["clients"]: r for r in results}
    ratio = by_clients[32]["chars_per_sec"] / by_clients[1]["chars_per_sec"] if 1 in by_clients and 32 in by_clients \
        else float("nan")
    record = {"cpu": cpu_name(), "cpus": os.cpu_count(), "load_before": load_before, "load_after": load_after,
              "model": "one RNN layer, 512 units, 28 characters" if not args.run else str(args.run),
              "chars": args.chars, "command": "python benchmarks/serve_load.py " + " ".join(sys.argv[1:]),
              "levels": results, "ratio_32_to_1": round(ratio, 2)}
    print(f"32 clients / 1 client: {ratio:.1f}x (goal >= 8x)")
    if args.name:
        (HERE / "results" / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")
        (HERE / "results" / f"{args.name}.md").write_text(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
