"""Runs every fuzz target for N seconds with its seed corpus and prints a table (target,
seconds, executions, crashes). Used by `make fuzz`; exits non-zero when a target crashed.

libFuzzer targets are build/fuzz/fuzz_<name>; atheris targets are atheris_<name>.py run by this
interpreter. New inputs go to build/fuzz/work/<name> (the committed seeds stay as they are);
crash reproducers to build/fuzz/artifacts/<name>/. Reproduce one with
`build/fuzz/fuzz_<name> <file>` or `.venv/bin/python tests/cpp/fuzz/atheris_<name>.py <file>`.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIBFUZZER = [
    "hpack", "http2_frame", "http2_connection", "grpc_message", "infer_decoder", "bytes_codec",
    "grpc_connection",
]  # fmt: skip
ATHERIS = ["config", "http_codec", "http_head", "shared_memory"]


def run(name: str, cmd: list[str], build: Path, seconds: int) -> tuple[int, int, list[Path]]:
    work = build / "work" / name
    artifacts = build / "artifacts" / name
    work.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    before = set(artifacts.iterdir())
    log = build / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    args = cmd + [
        f"-max_total_time={seconds}", "-print_final_stats=1", "-timeout=10", "-rss_limit_mb=4096",
        "-max_len=65536", f"-artifact_prefix={artifacts}/", str(work), str(HERE / "corpus" / name),
    ]  # fmt: skip
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, check=False,
                              timeout=seconds + 300)  # fmt: skip
    elapsed = round(time.monotonic() - start)
    text = log.read_text(errors="replace")
    m = re.search(r"stat::number_of_executed_units: (\d+)", text)
    executions = int(m.group(1)) if m else 0
    if executions == 0:
        done = re.findall(r"#(\d+)\s+(?:DONE|NEW|pulse|REDUCE)", text)
        executions = int(done[-1]) if done else 0
    crashes = sorted(set(artifacts.iterdir()) - before)
    if proc.returncode != 0 and not crashes:
        crashes = [log]  # died without a reproducer: the log says why
    return elapsed, executions, crashes


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--build", type=Path, default=Path("build/fuzz"))
    parser.add_argument("targets", nargs="*", help="names to run (default: all)")
    opts = parser.parse_args()
    chosen = set(opts.targets) or set(LIBFUZZER + ATHERIS)
    rows = []
    for name in LIBFUZZER + ATHERIS:
        if name not in chosen:
            continue
        if name in LIBFUZZER:
            cmd = [str(opts.build / f"fuzz_{name}")]
        else:
            cmd = [sys.executable, str(HERE / f"atheris_{name}.py")]
        print(f"fuzzing {name} for {opts.seconds} s ...", flush=True)
        rows.append((name, *run(name, cmd, opts.build, opts.seconds)))
    print(f"\n{'target':<18} {'seconds':>8} {'executions':>12} {'crashes':>8}")
    for name, seconds, executions, crashes in rows:
        print(f"{name:<18} {seconds:>8} {executions:>12} {len(crashes):>8}")
        for c in crashes:
            print(f"    reproducer: {c}")
    return 1 if any(crashes for *_, crashes in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
