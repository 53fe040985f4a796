#!/usr/bin/python3
"""The PixelSNAIL priors side by side: vqvae2 (benchmarks/bench_pixelsnail.cpp) vs PyTorch
(benchmarks/torch_pixelsnail.py, the reference modules of tests/golden/gen_pixelsnail.py),
2 threads each, every workload in its own process, one after the other (never
concurrently). Prints markdown tables: the training step (and the SDPA variant of the top
prior), sampling time per image (ours cached, ours naive, PyTorch naive) and the memory
bandwidth floor of batch-1 cached sampling (benchmarks/bench_stream.cpp).

    cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DVQVAE2_BUILD_TESTS=OFF -DVQVAE2_BUILD_EXAMPLES=OFF
    cmake --build build-bench -j 2 --target bench_pixelsnail bench_stream
    ../shared/tools/torch-baseline install            # once per machine (current PyTorch from PyPI)
    /usr/bin/python3 benchmarks/compare_priors.py [--quick] [--only top|bottom] [--batches 1 8]

Options: --quick (1 timed step / rep per workload, 2 prefix heights for the naive
integration), --only top|bottom, --config small (the TopSmall/BottomSmall sizes on both
sides: a smoke test in minutes), --bench-dir (default build-bench/benchmarks), --torch
(the command that runs PyTorch's python; default ../shared/tools/torch-baseline python when
it is installed, else /usr/bin/python3), --no-sdpa, --bf16 (adds PyTorch bf16-autocast rows),
--no-sample / --no-train, --json-out FILE (every raw result, rewritten after each run, so an
interrupted comparison keeps what it measured), --from-json FILE (print the tables of such a
file: its steps and heights are taken as the defaults, 3 and 5).
"""
import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BASELINE = ROOT.parent / "shared" / "tools" / "torch-baseline"
PRIOR_NAME = {("reference", "top"): "Top", ("reference", "bottom"): "Bottom", ("small", "top"): "TopSmall",
              ("small", "bottom"): "BottomSmall"}
RAW = []
JSON_OUT = None  # --json-out: rewritten after every run, so an interrupted comparison keeps what it measured


def record(entry):
    RAW.append(entry)
    if JSON_OUT:
        Path(JSON_OUT).write_text(json.dumps(RAW, indent=1))


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_json(cmd, env=None, what=""):
    t = time.perf_counter()
    log("running %s: %s" % (what, " ".join(shlex.quote(c) for c in cmd)))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    log("  %.1f s, rc %d" % (time.perf_counter() - t, p.returncode))
    if p.returncode != 0:
        log("  FAILED: " + (p.stderr.strip().splitlines() or ["?"])[-1])
        record({"what": what, "cmd": cmd, "rc": p.returncode, "stderr": p.stderr[-2000:]})
        return None
    return p.stdout


def ours(a, prior, workload, batch):
    name = "PixelSNAIL_%s_%s" % (PRIOR_NAME[(a.config, prior)], workload)
    env = dict(os.environ, OMP_NUM_THREADS="2")
    out = run_json([str(Path(a.bench_dir) / "bench_pixelsnail"), "--benchmark_filter=^%s/batch:%d/" % (name, batch),
                    "--benchmark_format=json", "--benchmark_min_time=%g" % a.min_time], env, "ours %s b%d" % (name, batch))
    if out is None:
        return None
    runs = [b for b in json.loads(out)["benchmarks"] if b.get("run_type", "iteration") == "iteration"]
    if not runs:
        return None
    b = runs[0]
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b.get("time_unit", "ns")]
    b["seconds"] = b["real_time"] * scale
    record({"what": "ours", "name": b["name"], "result": b})
    return b


def torch_side(a, workload, prior, batch, sdpa=False, bf16=False):
    cmd = a.torch + [str(HERE / "torch_pixelsnail.py"), workload, "--prior", prior, "--batch", str(batch), "--config",
                     a.config]
    if workload == "train":
        cmd += ["--steps", str(a.torch_steps), "--warmup", "1"]
    else:
        cmd += ["--reps", str(a.torch_reps), "--heights", str(a.heights)]
    if sdpa:
        cmd.append("--sdpa")
    if bf16:
        cmd.append("--bf16")
    out = run_json(cmd, None, "torch %s %s b%d%s%s" % (workload, prior, batch, " sdpa" if sdpa else "",
                                                       " bf16" if bf16 else ""))
    if out is None:
        return None
    r = json.loads(out.strip().splitlines()[-1])
    record({"what": "torch", "result": r})
    return r


def stream(a):
    out = run_json([str(Path(a.bench_dir) / "bench_stream"), "--benchmark_filter=Stream_(Read|Triad|Copy)/", "--benchmark_format=json",
                    "--benchmark_min_time=%g" % (0.2 if a.quick else 2.0)], dict(os.environ, OMP_NUM_THREADS="2"),
                   "stream")
    if out is None:
        return {}
    res = {}
    for b in json.loads(out)["benchmarks"]:
        kind = b["name"].split("/")[0].replace("Stream_", "").lower()
        res[kind if "/threads:2/" in b["name"] else kind + "1"] = b["bytes_per_second"]
    record({"what": "stream", "result": res})
    return res


def f(x, fmt="%.3g"):
    return "—" if x is None else fmt % x


def ratio(num, den):
    return None if num is None or den is None or den == 0 else num / den


def get(d, *keys):
    for k in keys:
        if d is None or k not in d:
            return None
        d = d[k]
    return d


def machine_line(torch_version):
    cpu = "?"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    return "%s; %s, %d CPUs; vqvae2 %s; PyTorch %s; 2 threads each" % (
        datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), cpu, os.cpu_count(), rev, torch_version)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["top", "bottom"])
    ap.add_argument("--config", choices=["reference", "small"], default="reference")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--bench-dir", default=str(ROOT / "build-bench" / "benchmarks"))
    ap.add_argument("--torch", default=None, help="command running PyTorch's python (split like a shell)")
    ap.add_argument("--min-time", type=float, default=None, help="ours: --benchmark_min_time (default 10, quick 0)")
    ap.add_argument("--no-sdpa", action="store_true")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--no-sample", action="store_true")
    ap.add_argument("--json-out")
    ap.add_argument("--from-json", help="print the tables of an earlier --json-out file (measures nothing)")
    a = ap.parse_args()
    if a.from_json:
        RAW.extend(json.loads(Path(a.from_json).read_text()))
        config, tv, sdpa, a.bf16, train, fwd, cached, naive, bw = from_raw(RAW)
        a.config, a.quick, a.json_out = config or a.config, False, None
        a.torch_steps, a.heights = 3, 5
        render(a, tv, sdpa, train, fwd, cached, naive, bw)
        finish()
        return
    if a.torch is None:
        installed = Path(os.environ.get("TORCH_BASELINE_DIR", "/opt/torch-baseline")) / "venv" / "bin" / "python"
        a.torch = "%s python" % BASELINE if installed.exists() else "/usr/bin/python3"
    a.torch = shlex.split(a.torch)
    if a.min_time is None:
        a.min_time = 0.0 if a.quick else 10.0
    a.torch_steps = 1 if a.quick else 3
    a.torch_reps = 1 if a.quick else 3
    a.heights = 2 if a.quick else 5
    priors = [a.only] if a.only else ["top", "bottom"]

    tv = subprocess.run(a.torch + ["-c", "import torch; print(torch.__version__)"], capture_output=True,
                        text=True).stdout.strip() or "?"
    has_sdpa = not a.no_sdpa and tv.split(".")[0] not in ("0", "1", "?")

    train, fwd, cached, naive = {}, {}, {}, {}
    global JSON_OUT
    JSON_OUT = a.json_out
    for prior in priors:
        for b in a.batches:
            key = (prior, b)
            if not a.no_train:
                train[key] = {"ours": ours(a, prior, "Train", b), "torch": torch_side(a, "train", prior, b)}
                if prior == "top" and has_sdpa:
                    train[key]["sdpa"] = torch_side(a, "train", prior, b, sdpa=True)
                if a.bf16:
                    train[key]["bf16"] = torch_side(a, "train", prior, b, bf16=True)
            if not a.no_sample:
                fwd[key] = ours(a, prior, "Forward", b)
                cached[key] = ours(a, prior, "CachedSample", b)
                naive[key] = {"torch": torch_side(a, "naive", prior, b)}
                if prior == "top" and has_sdpa:
                    naive[key]["sdpa"] = torch_side(a, "naive", prior, b, sdpa=True)
                if a.bf16:
                    naive[key]["bf16"] = torch_side(a, "naive", prior, b, bf16=True)
    bw = stream(a) if not a.no_sample else {}
    render(a, tv, has_sdpa, train, fwd, cached, naive, bw)
    finish()


def from_raw(raw):
    """The tables' inputs from a --json-out file (also one an interrupted run left)."""
    prior_of = {v: k for k, v in PRIOR_NAME.items()}
    train, fwd, cached, naive, bw, tv, sdpa, bf16 = {}, {}, {}, {}, {}, "?", False, False
    config = None
    for e in raw:
        if e.get("rc"):
            continue
        r = e["result"]
        if e["what"] == "stream":
            bw = r
        elif e["what"] == "ours":
            base, batch = e["name"].split("/")[:2]
            _, name, workload = base.split("_")
            config, prior = prior_of[name]
            key = (prior, int(batch.split(":")[1]))
            r["seconds"] = r["real_time"] * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[r.get("time_unit", "ns")]
            if workload == "Train":
                train.setdefault(key, {})["ours"] = r
            elif workload == "Forward":
                fwd[key] = r
            else:
                cached[key] = r
        elif e["what"] == "torch":
            tv, config = r["torch"], r["config"]
            key = (r["prior"], r["batch"])
            slot = "sdpa" if r["sdpa"] else "bf16" if r["bf16"] else "torch"
            sdpa, bf16 = sdpa or r["sdpa"], bf16 or r["bf16"]
            (train if r["workload"] == "train" else naive).setdefault(key, {})[slot] = r
    for key in cached:
        fwd.setdefault(key, None)
        naive.setdefault(key, {})
    return config, tv, sdpa, bf16, train, fwd, cached, naive, bw


def render(a, tv, has_sdpa, train, fwd, cached, naive, bw):
    print("## PixelSNAIL priors (%s configurations): vqvae2 vs PyTorch%s\n" % (a.config, " (quick)" if a.quick else ""))
    print(machine_line(tv) + "\n")
    if train:
        print("### Training step (forward, cross-entropy, backward, Adam)\n")
        extra = (["PyTorch SDPA s", "PyTorch SDPA / ours"] if has_sdpa else []) + \
                (["PyTorch bf16 s", "PyTorch bf16 / ours"] if a.bf16 else [])
        head = ["prior", "batch", "ours s/step", "ours img/s", "PyTorch s/step", "PyTorch img/s", "PyTorch / ours"] + \
            extra + ["ours peak MB", "PyTorch peak MB"] + (["SDPA peak MB"] if has_sdpa else [])
        print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
        for (prior, b), r in train.items():
            o, t = get(r, "ours", "seconds"), get(r, "torch", "step_s")
            row = [prior, str(b), f(o), f(get(r, "ours", "img/s")), f(t), f(get(r, "torch", "img_per_s")), f(ratio(t, o), "%.2fx")]
            if has_sdpa:
                s = get(r, "sdpa", "step_s")
                row += [f(s), f(ratio(s, o), "%.2fx")]
            if a.bf16:
                s = get(r, "bf16", "step_s")
                row += [f(s), f(ratio(s, o), "%.2fx")]
            row += [f(get(r, "ours", "peak_rss_MB"), "%.0f"), f(get(r, "torch", "peak_rss_mb"), "%.0f")]
            if has_sdpa:
                row.append(f(get(r, "sdpa", "peak_rss_mb"), "%.0f"))
            print("| " + " | ".join(row) + " |")
        print("\nRatios are PyTorch's time over ours (> 1: ours is faster). Ours: median of Google Benchmark's "
              "iterations after one untimed step; PyTorch: median of %d steps after 1 warm-up.\n" % a.torch_steps)
    if cached:
        print("### Sampling one image (seconds per image)\n")
        extra = (["PyTorch SDPA naive"] if has_sdpa else []) + (["PyTorch bf16 naive"] if a.bf16 else [])
        head = ["prior", "batch", "ours cached", "ours naive", "PyTorch naive"] + extra + \
            ["PyTorch naive / ours cached", "ours fwd s (full map)", "PyTorch fwd s (full map)", "ours cached peak MB",
             "PyTorch naive peak MB"]
        print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
        for (prior, b), c in cached.items():
            fo = fwd[(prior, b)]
            P = get(c, "positions") or get(fo, "positions")
            ours_naive = None if fo is None or P is None else fo["seconds"] * P / b
            n = naive[(prior, b)]
            tn = get(n, "torch", "s_per_img")
            H = {"top": 32, "bottom": 64}[prior]
            row = [prior, str(b), f(get(c, "s_per_img")), f(ours_naive), f(tn)]
            if has_sdpa:
                row.append(f(get(n, "sdpa", "s_per_img")))
            if a.bf16:
                row.append(f(get(n, "bf16", "s_per_img")))
            row += [f(ratio(tn, get(c, "s_per_img")), "%.3gx"), f(get(fo, "seconds")),
                    f(get(n, "torch", "step_s_by_height", str(H))), f(get(c, "peak_rss_MB"), "%.0f"),
                    f(get(n, "torch", "peak_rss_mb"), "%.0f")]
            print("| " + " | ".join(row) + " |")
        print("\nOurs cached: sample::CachedSampler over the whole map (conditioning included), once. Ours naive: "
              "the evaluation forward x positions / batch (sample::sample_naive's cost). PyTorch naive: the "
              "reference's sampler (the network on the prefix rows for every position, the condition computed "
              "once), forward timed at %d prefix heights and integrated over the positions, / batch.\n" % a.heights)
        one = [(p, c) for (p, b), c in cached.items() if b == 1 and c is not None]
        if one:
            print("### Batch-1 cached sampling against the memory-bandwidth floor\n")
            rd, tr, rd1 = bw.get("read"), bw.get("triad"), bw.get("read1")
            print("Measured (bench_stream, 2 threads): read %s GB/s, triad %s GB/s, copy %s GB/s; "
                  "1 thread: read %s GB/s.\n" % (f(rd and rd / 1e9), f(tr and tr / 1e9),
                                                 f(bw.get("copy") and bw["copy"] / 1e9), f(rd1 and rd1 / 1e9)))
            head = ["prior", "weights MB", "streamed MB/position", "positions", "floor s/img (read)",
                    "floor s/img (triad)", "floor s/img (1-thread read)", "ours s/img", "ours / floor (read)",
                    "ours weight GB/s", "ours CPU / wall"]
            print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
            for prior, c in one:
                sb, P = c["streamed_bytes"], c["positions"]
                fr = None if not rd else sb * P / rd
                ft = None if not tr else sb * P / tr
                f1 = None if not rd1 else sb * P / rd1
                print("| " + " | ".join([prior, f(c["weight_bytes"] / 1e6, "%.0f"), f(sb / 1e6, "%.0f"), "%d" % P,
                                         f(fr), f(ft), f(f1), f(c["s_per_img"]),
                                         f(ratio(c["s_per_img"], fr), "%.2fx"), f(c.get("weight_GBps"), "%.1f"),
                                         f(c.get("cpu_per_wall"), "%.2f")]) + " |")
            print("\nFloor = streamed weight bytes per position (every weight a step reads: the stem is a gather, "
                  "the conditioning runs once, masked taps are skipped) x positions / bandwidth: a batch-1 step "
                  "must read every weight once. ours / floor = 1 would be bandwidth-bound. CPU / wall: the "
                  "process's CPU time over wall time (about 1 when the sampler keeps one core busy: then the 1-thread floor applies, 2 for both).\n")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(RAW, indent=1))


def finish():
    failed = [r for r in RAW if r.get("rc")]
    if failed:
        print("Failed: " + "; ".join(r["what"] for r in failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
