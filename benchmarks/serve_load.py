"""Load on ``scratchrnn serve``: aggregate characters/s and request latency for 1, 8, 32 and 128 concurrent
clients, side by side against one server process, on 127.0.0.1 only.

Each client sends ``/v1/completions`` requests one after another (``--chars`` characters at temperature
1, its own seed each time, not streamed) until it has sent ``--requests`` or the level's ``--seconds``
have passed; each level starts once the previous one has ended, and the levels run in turn ``--rounds``
times, so that a change in the machine's load over the run falls on every level alike. Characters/s is a
round's completed characters over its wall time, the median over the rounds; the latencies are those of
single requests (every round's), from sending to the last byte. The issue's goal: 32 clients get at
least 8x the characters/s of one.

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


def start_server(run: Path, max_streams: int, backend: str, threads: int) -> tuple[subprocess.Popen, str, str]:
    proc = subprocess.Popen([sys.executable, "-m", "scratchrnn", "serve", str(run), "--port", "0", "--max-streams",
                             str(max_streams), "--backend", backend, "--threads", str(threads)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
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


async def level(url: str, model: str, clients: int, requests: int, chars: int, seconds: float, prompt: str,
                first_seed: int = 0) -> dict:
    """One round of one level: its characters, wall time and every request's latency."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=httpx.Timeout(seconds + 120), limits=limits) as http:
        latencies, counts = [], []
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(client(http, url, model, prompt, chars,
                                      range(first_seed + k * 1000, first_seed + k * 1000 + requests),
                                      deadline, latencies, counts) for k in range(clients)))
        wall = time.perf_counter() - started
    return {"characters": int(sum(counts)), "seconds": wall, "latencies": latencies}


def summary(clients: int, rounds: list[dict]) -> dict:
    latencies = [v for r in rounds for v in r["latencies"]]
    rates = [r["characters"] / r["seconds"] for r in rounds]
    return {"clients": clients, "requests": len(latencies), "characters": sum(r["characters"] for r in rounds),
            "chars_per_sec": round(float(np.median(rates)), 1),
            "chars_per_sec_rounds": [round(v, 1) for v in rates],
            "latency_p50_s": round(float(np.percentile(latencies, 50)), 4),
            "latency_p99_s": round(float(np.percentile(latencies, 99)), 4)}


def markdown(record: dict) -> str:
    rows = "\n".join(f"| {r['clients']} | {r['requests']} | {r['chars_per_sec']:,.0f} "
                     f"({', '.join(f'{v:,.0f}' for v in r['chars_per_sec_rounds'])}) | {r['latency_p50_s']:.3f} | "
                     f"{r['latency_p99_s']:.3f} | {r['chars_per_sec'] / record['levels'][0]['chars_per_sec']:.1f}x |"
                     for r in record["levels"])
    return (f"# scratchrnn serve under load\n\n"
            f"CPU: {record['cpu']} ({record['cpus']} logical CPUs); load average before / after: "
            f"{record['load_before']} / {record['load_after']} (the machine was shared: compare the ratios, "
            f"measured side by side, more than the absolute numbers).\n"
            f"Model: {record['model']}, stepped by the {record['backend']} backend. Each request: {record['chars']} characters at temperature 1, not streamed; "
            f"{record['rounds']} rounds of every level in turn.\n"
            f"Command: `{record['command']}`\n\n"
            f"| clients | requests | characters/s: median (each round) | p50 latency (s) | p99 latency (s) | "
            f"vs 1 client |\n"
            f"|---:|---:|---:|---:|---:|---:|\n{rows}\n\n"
            f"Goal (issue 25): 32 clients >= 8x the characters/s of one: {record['ratio_32_to_1']:.1f}x.\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a trained run to serve (default: the chapter's model, untrained weights)")
    parser.add_argument("--backend", default="numpy", help="the framework the server steps with")
    parser.add_argument("--threads", type=int, default=1, help="the server's --threads")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="concurrent clients, comma-separated")
    parser.add_argument("--chars", type=int, default=1000, help="characters each request asks for")
    parser.add_argument("--requests", type=int, default=2, help="requests each client sends at most, per round")
    parser.add_argument("--rounds", type=int, default=3, help="times every level runs, in turn")
    parser.add_argument("--seconds", type=float, default=30.0, help="at most this long per level")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 100 characters, 1 request, 5 s a level, 1 round")
    parser.add_argument("--name", help="write benchmarks/results/NAME.json and NAME.md")
    args = parser.parse_args()
    if args.quick:
        args.chars, args.requests, args.seconds, args.rounds = 100, 1, 5.0, 1
    levels = [int(v) for v in args.levels.split(",")]
    with tempfile.TemporaryDirectory() as temporary:
        run = Path(args.run) if args.run else chapter_run(Path(temporary))
        server, url, model = start_server(run, max(levels), args.backend, args.threads)
        try:
            load_before = [round(v, 2) for v in os.getloadavg()]
            # one request first, so that the first level does not pay for the server's warming up
            asyncio.run(level(url, model, 1, 1, 50, 30, "time traveller"))
            rounds = {clients: [] for clients in levels}
            for round_number in range(args.rounds):
                for clients in levels:
                    rounds[clients].append(asyncio.run(level(url, model, clients, args.requests, args.chars,
                                                             args.seconds, "time traveller", round_number * 100)))
                    done = rounds[clients][-1]
                    print(f"round {round_number + 1}, {clients} clients: "
                          f"{done['characters'] / done['seconds']:,.0f} characters/s", flush=True)
            results = [summary(clients, rounds[clients]) for clients in levels]
            load_after = [round(v, 2) for v in os.getloadavg()]
        finally:
            server.terminate()
            server.wait(timeout=30)
    by_clients = {r["clients"]: r for r in results}
    ratio = by_clients[32]["chars_per_sec"] / by_clients[1]["chars_per_sec"] if 1 in by_clients and 32 in by_clients \
        else float("nan")
    record = {"cpu": cpu_name(), "cpus": os.cpu_count(), "backend": args.backend, "load_before": load_before, "load_after": load_after,
              "model": "one RNN layer, 512 units, 28 characters" if not args.run else str(args.run),
              "chars": args.chars, "rounds": args.rounds, "command": "python benchmarks/serve_load.py " + " ".join(sys.argv[1:]),
              "levels": results, "ratio_32_to_1": round(ratio, 2)}
    print(f"32 clients / 1 client: {ratio:.1f}x (goal >= 8x)")
    if args.name:
        (HERE / "results" / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")
        (HERE / "results" / f"{args.name}.md").write_text(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
