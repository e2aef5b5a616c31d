#!/usr/bin/env bash
# Native gRPC transport under NVIDIA perf_analyzer: serves a model repository (default the
# reference models from shared/tools/bench/make_models.py) with frontends/grpc_native.py on
# 127.0.0.1 and sweeps concurrency for each model with shared/tools/bench/bench_server.sh.
#   benchmarks/bench_grpc_transport.sh [REPO=/tmp/bm] [MODELS="add_sub mlp"]
# Env: PORT=18001  IO_THREADS=1  CONC="1 8 32 64"  INPUTS=/tmp/bm-inputs  NAME=tritonlite-native
# Results: $BENCH_HOME/work/$NAME-MODEL.csv (see bench_server.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${TOOLS:-$ROOT/../shared/tools/bench}"
[ -d "$TOOLS" ] || TOOLS=/work/shared/tools/bench
REPO="${1:-/tmp/bm}"; MODELS="${2:-add_sub mlp}"
PORT="${PORT:-18001}"; INPUTS="${INPUTS:-/tmp/bm-inputs}"; NAME="${NAME:-tritonlite-native}"
PY="$ROOT/.venv/bin/python"

"$PY" - "$REPO" "$PORT" "${IO_THREADS:-1}" <<'PYEOF' &
import asyncio, signal, sys
from tritonlite import Server
from tritonlite.frontends.grpc_native import start_native_grpc

async def main(repo: str, port: int, io_threads: int) -> None:
    server = Server(model_repository=repo)
    frontend = await start_native_grpc(server, "127.0.0.1", port, io_threads=io_threads)
    print(f"native gRPC on 127.0.0.1:{frontend.port}, fast path: {frontend.core.models()}",
          flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await frontend.stop(1.0)
    server.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
PYEOF
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true; wait $SERVER_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
  sleep 0.2
done
for model in $MODELS; do
  INPUT_DATA="$INPUTS/$model.json" "$TOOLS/bench_server.sh" "$NAME" "127.0.0.1:$PORT" "$model"
done
