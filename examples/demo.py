"""`make demo`: start zeroserve with the iris models deployed and show where to look.

Starts `zeroserve up` in the foreground of this terminal (Ctrl-C stops it), deploys
examples/iris/iris.onnx as `iris`, iris.joblib as `iris-sklearn` and the MiniLM folder as
`minilm` (with a snapshot) once it answers, and prints the URLs and curls to copy.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent


def wait_live(base: str, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"zeroserve up exited with code {proc.returncode}")
        try:
            if httpx.get(f"{base}/v2/health/live", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    sys.exit(f"zeroserve did not answer on {base} within {timeout_s:g} s")


def zs(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "zeroserve.cli", *args], check=True)


def deploy_once(base: str, name: str, path: Path, *flags: str) -> None:
    """Deploy unless an earlier demo run already did (the state dir keeps deployments)."""
    if httpx.get(f"{base}/api/models/{name}", timeout=5).status_code == 200:
        print(f"{name} is already deployed (kept in the state dir)")
        return
    zs("deploy", name, str(path), *flags, "--url", base)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--state-dir", default=".demo-state")
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "zeroserve.cli", "up", "--port", str(args.port),
         "--state-dir", args.state_dir, "--log-level", "warning"]
    )  # fmt: skip
    try:
        wait_live(base, proc)
        deploy_once(base, "iris", HERE / "iris" / "iris.onnx", "--idle-timeout", "60")
        deploy_once(base, "iris-sklearn", HERE / "iris" / "iris.joblib", "--trust")
        deploy_once(base, "minilm", HERE / "minilm" / "build" / "minilm", "--snapshot")
        zs("ls", "--url", base)
        body = (
            '{"inputs":[{"name":"X","datatype":"FP32","shape":[2,4],'
            '"data":[5.1,3.5,1.4,0.2,6.7,3.0,5.2,2.3]}]}'
        )
        print(
            f"""
zeroserve is up with three models (each at zero instances until the first request).

  API          {base}
  API docs     {base}/docs        (OpenAPI: {base}/openapi.json)
  metrics      {base}/metrics
  status       .venv/bin/zeroserve status iris --url {base}

Try an inference (V2):
  curl -s {base}/v2/models/iris/infer -H 'content-type: application/json' -d '{body}'

or V1:
  curl -s {base}/v1/models/iris-sklearn:predict -d '{{"instances":[[5.1,3.5,1.4,0.2]]}}'

Sentence embeddings (MiniLM, 384-d; its instances fork from a loaded snapshot):
  curl -s {base}/v1/models/minilm:predict -d '{{"instances":["a cat on a mat"]}}'

An asynchronous job (queued on disk, retried, survives a restart; see docs/jobs.md):
  .venv/bin/zeroserve jobs submit iris --wait --url {base} --data '{body}'

Ctrl-C stops the platform; the deployments stay in {args.state_dir}.
""",
            flush=True,
        )
        proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)


if __name__ == "__main__":
    main()
