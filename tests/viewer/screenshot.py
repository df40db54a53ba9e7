#!/usr/bin/env python3
"""Store an olvf study in a private Orthanc and screenshot it in OHIF (headless Chromium).

Everything runs on loopback and nothing is fetched from the internet:

* Orthanc (Debian ``orthanc``) with its DICOMweb plugin (``orthanc-dicomweb``),
  started from a temporary configuration on a free loopback port, DICOM port off;
* the prebuilt OHIF Viewer from the npm package ``@ohif/app`` (its ``dist/``
  folder, see ``fetch_ohif.sh``), served by a small same-origin HTTP server here
  that also reverse-proxies ``/dicom-web/`` to Orthanc (so no CORS is needed) and
  replaces OHIF's ``app-config.js`` with one that points at it;
* Chromium (Debian ``chromium``) in headless mode, driven over the DevTools
  protocol on a pipe (``--remote-debugging-pipe``), so only the standard library
  is needed.

Example::

    olvf-phantom /tmp/viewer/phantom.dcm --seed 1 --fracture L2:fresh --force
    olvf-infer --bundle /tmp/demo --dicom --out /tmp/viewer/out --force /tmp/viewer/phantom.dcm
    python tests/viewer/screenshot.py --out /tmp/viewer/png \\
        /tmp/viewer/phantom.dcm /tmp/viewer/out/phantom/olvf_sc.dcm /tmp/viewer/out/phantom/olvf_sr.dcm

or let it run the pipeline itself: ``--bundle /tmp/demo --phantom /tmp/viewer/phantom.dcm``.

Writes ``study-list.png``, ``viewer-sc.png``, ``viewer-sr.png`` (and
``viewer-source.png``, the study as the hanging protocol opens it) into ``--out``,
plus ``viewer-sr.txt``, the text OHIF shows in its SR viewport and side panel.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

OHIF_VERSION = "3.13.2"
DEFAULT_OHIF_DIST = Path(
    os.environ.get(
        "OLVF_OHIF_DIST",
        Path.home() / ".cache" / "olvf" / f"ohif-{OHIF_VERSION}" / "package" / "dist",
    )
)
ORTHANC = os.environ.get("OLVF_ORTHANC", "/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = os.environ.get("OLVF_ORTHANC_DICOMWEB", "/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
WIDTH, HEIGHT = 1600, 1000


def log(msg: str) -> None:
    print(f"[viewer] {msg}", file=sys.stderr, flush=True)


def find_chromium() -> str | None:
    env = os.environ.get("OLVF_CHROMIUM")
    if env:
        return env
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def missing_requirements(ohif_dist: Path = DEFAULT_OHIF_DIST) -> list[str]:
    """What this machine lacks to run the viewer check (empty when all is there)."""
    missing = []
    if not (os.path.isfile(ORTHANC) and os.access(ORTHANC, os.X_OK)):
        missing.append(f"Orthanc ({ORTHANC}; Debian package orthanc)")
    if not os.path.isfile(DICOMWEB_PLUGIN):
        missing.append(f"Orthanc DICOMweb plugin ({DICOMWEB_PLUGIN}; Debian package orthanc-dicomweb)")
    if find_chromium() is None:
        missing.append("Chromium (Debian package chromium)")
    if not (ohif_dist / "index.html").is_file():
        missing.append(f"OHIF build ({ohif_dist}; run tests/viewer/fetch_ohif.sh or set OLVF_OHIF_DIST)")
    return missing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- Orthanc


@contextlib.contextmanager
def orthanc(workdir: Path):
    port = free_port()
    storage = workdir / "orthanc-db"
    storage.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "olvf-viewer-check",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": False,
        "DicomPort": free_port(),
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
        "HttpCompressionEnabled": False,
    }
    cfg = workdir / "orthanc.json"
    cfg.write_text(json.dumps(config, indent=2))
    logf = open(workdir / "orthanc.log", "wb")
    proc = subprocess.Popen([ORTHANC, str(cfg)], stdout=logf, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited ({proc.returncode}); see {workdir / 'orthanc.log'}")
            try:
                with urllib.request.urlopen(base + "/system", timeout=2) as r:
                    system = json.load(r)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("Orthanc did not answer within 30 s") from None
                time.sleep(0.2)
        with urllib.request.urlopen(base + "/plugins", timeout=5) as r:
            plugins = json.load(r)
        if "dicom-web" not in plugins:
            raise RuntimeError(f"Orthanc's DICOMweb plugin did not load (plugins: {plugins})")
        log(f"Orthanc {system.get('Version')} on {base}, plugins {plugins}")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        logf.close()


def store(base: str, files: list[Path]) -> dict:
    """POST each file to Orthanc's /instances; return {kind: ids} for the study."""
    study = None
    for f in files:
        req = urllib.request.Request(
            base + "/instances",
            data=f.read_bytes(),
            method="POST",
            headers={"Content-Type": "application/dicom"},
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            ans = json.load(r)
        log(f"stored {f.name}: {ans.get('Status')}")
        study = ans["ParentStudy"]
    with urllib.request.urlopen(f"{base}/studies/{study}", timeout=10) as r:
        info = json.load(r)
    return info


# --------------------------------------------------------------------------- web server


def ohif_config(dicomweb_root: str) -> str:
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "orthanc",
        "configuration": {
            "friendlyName": "olvf viewer check (local Orthanc)",
            "name": "orthanc",
            "wadoUriRoot": dicomweb_root,
            "qidoRoot": dicomweb_root,
            "wadoRoot": dicomweb_root,
            "qidoSupportsIncludeField": False,
            "imageRendering": "wadors",
            "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True,
            "supportsFuzzyMatching": False,
            "supportsWildcard": True,
            "omitQuotationForMultipartRequest": True,
            "bulkDataURI": {"enabled": True},
        },
    }
    cfg = {
        "routerBasename": "/",
        "extensions": [],
        "modes": [],
        "customizationService": {},
        "showStudyList": True,
        "maxNumberOfWebWorkers": 3,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": False,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "investigationalUseDialog": {"option": "never"},
        "showErrorDetails": "always",
        "defaultDataSourceName": "orthanc",
        "dataSources": [source],
    }
    return "window.config = " + json.dumps(cfg, indent=2) + ";\n"


MIME = {
    ".js": "application/javascript",
    ".mjs": "application/javascript",
    ".css": "text/css",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".txt": "text/plain",
    ".xml": "application/xml",
    ".map": "application/json",
}


def make_handler(dist: Path, orthanc_base: str, config_js: bytes):
    target = urllib.parse.urlsplit(orthanc_base)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # keep the test output quiet
            pass

        def _send(self, code: int, body: bytes, ctype: str, extra: dict | None = None):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            # OHIF uses SharedArrayBuffer when it can; these make it cross-origin isolated.
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _proxy(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
            headers = {
                k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection", "accept-encoding")
            }
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("connection", "transfer-encoding", "content-length", "keep-alive"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def do_GET(self):
            path = urllib.parse.urlsplit(self.path).path
            if path.startswith("/dicom-web/") or path.startswith("/wado"):
                return self._proxy()
            if path == "/app-config.js":
                return self._send(200, config_js, MIME[".js"])
            rel = urllib.parse.unquote(path).lstrip("/")
            f = (dist / rel).resolve()
            if rel and f.is_file() and dist in f.parents:
                return self._send(200, f.read_bytes(), MIME.get(f.suffix.lower(), "application/octet-stream"))
            if rel == "sw.js" or Path(rel).suffix.lower() in (".js", ".css", ".wasm", ".png", ".map"):
                return self._send(404, b"not found", "text/plain")
            # single-page app: every route is index.html
            return self._send(200, (dist / "index.html").read_bytes(), MIME[".html"])

        do_HEAD = do_GET

        def do_POST(self):
            return self._proxy()

    return Handler


@contextlib.contextmanager
def web_server(dist: Path, orthanc_base: str):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    handler = make_handler(dist.resolve(), orthanc_base, ohif_config(base + "/dicom-web").encode())
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    log(f"OHIF {dist} served on {base}")
    try:
        yield base
    finally:
        httpd.shutdown()
        httpd.server_close()


# --------------------------------------------------------------------------- Chromium (CDP on a pipe)


class Browser:
    """Headless Chromium driven with the DevTools protocol over --remote-debugging-pipe."""

    def __init__(self, chromium: str, workdir: Path):
        self._to_r, self._to_w = os.pipe()  # we write commands, Chromium reads fd 3
        self._from_r, self._from_w = os.pipe()  # Chromium writes fd 4, we read
        args = [
            chromium,
            "--headless=new",
            "--no-sandbox",
            "--remote-debugging-pipe",
            f"--user-data-dir={workdir / 'chromium-profile'}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--mute-audio",
            "--hide-scrollbars",
            "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader",
            "--ignore-gpu-blocklist",
            "--disable-dev-shm-usage",
            f"--window-size={WIDTH},{HEIGHT}",
            "about:blank",
        ]
        shell = f'exec "$@" 3<&{self._to_r} 4>&{self._from_w}'
        self._err = open(workdir / "chromium.log", "wb")
        self.proc = subprocess.Popen(
            ["bash", "-c", shell, "bash", *args],
            pass_fds=(self._to_r, self._from_w),
            stdout=self._err,
            stderr=subprocess.STDOUT,
        )
        os.close(self._to_r)
        os.close(self._from_w)
        self._wfile = os.fdopen(self._to_w, "wb", buffering=0)
        self._rfile = os.fdopen(self._from_r, "rb", buffering=0)
        self._buf = b""
        self._id = 0
        self._events: list[dict] = []
        self.session = None
        self.console: list[str] = []

    def _read_message(self) -> dict:
        while b"\0" not in self._buf:
            chunk = self._rfile.read(1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: bool = True) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        self._wfile.write(json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read_message()
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            if m.get("method") == "Runtime.consoleAPICalled":
                args = m["params"].get("args", [])
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
            elif m.get("method") == "Runtime.exceptionThrown":
                self.console.append("EXCEPTION " + json.dumps(m["params"].get("exceptionDetails", {}))[:500])

    def open_page(self):
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        att = self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, session=False)
        self.session = att["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
        )

    def goto(self, url: str):
        self.send("Page.navigate", {"url": url})

    def eval(self, expr: str):
        r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"JS error in {expr[:80]!r}: {r['exceptionDetails']}")
        return r.get("result", {}).get("value")

    def wait_for(self, expr: str, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                v = self.eval(expr)
            except RuntimeError:
                v = None
            if v:
                return v
            time.sleep(0.25)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")

    def click(self, x: float, y: float, count: int = 1):
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        for i in range(1, count + 1):
            for kind in ("mousePressed", "mouseReleased"):
                self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": i})

    def screenshot(self, path: Path):
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        log(f"wrote {path}")

    def close(self):
        with contextlib.suppress(Exception):
            self.send("Browser.close", session=False)
        with contextlib.suppress(Exception):
            self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self._wfile, self._rfile, self._err):
            with contextlib.suppress(Exception):
                f.close()


# JS helpers evaluated in the page
JS_CANVAS_DRAWN = r"""
(() => {
  const cs = [...document.querySelectorAll('.cornerstone-viewport-element canvas, [data-viewport-uid] canvas')]
    .filter(c => c.width > 100 && c.height > 100);
  for (const c of cs) {
    try {
      const t = document.createElement('canvas'); t.width = 64; t.height = 64;
      const g = t.getContext('2d'); g.drawImage(c, 0, 0, 64, 64);
      const d = g.getImageData(0, 0, 64, 64).data; const seen = new Set();
      for (let i = 0; i < d.length; i += 4) seen.add(d[i] * 65536 + d[i+1] * 256 + d[i+2]);
      if (seen.size > 20) return seen.size;
    } catch (e) {}
  }
  return 0;
})()
"""

JS_THUMBNAILS = r"""
(() => [...document.querySelectorAll(
     '[data-cy="study-browser-thumbnail"], [data-cy="study-browser-thumbnail-no-image"]')]
   .map(e => { const r = e.getBoundingClientRect();
               return {text: e.innerText, x: r.x + r.width / 2, y: r.y + r.height / 2, w: r.width}; }))()
"""


def thumbnail_for(b: Browser, modality: str, timeout: float = 20):
    """The study-browser thumbnail whose modality label (its first line) is `modality`."""

    def pick():
        for t in b.eval(JS_THUMBNAILS) or []:
            lines = [x.strip() for x in t["text"].splitlines() if x.strip()]
            if t["w"] > 0 and lines and lines[0] == modality:
                return t
        return None

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = pick()
        if t:
            return t
        time.sleep(0.25)
    raise TimeoutError(f"no study-browser thumbnail of modality {modality}: {b.eval(JS_THUMBNAILS)}")


def dismiss_tour(b: Browser):
    """Close OHIF's first-visit onboarding tour ("Skip all") if it is up."""
    b.eval("""(() => { const e = [...document.querySelectorAll('button, a, span')]
        .find(x => x.innerText && x.innerText.trim() === 'Skip all'); if (e) e.click(); return !!e; })()""")
    settle(0.5)


def settle(seconds: float = 1.5):
    time.sleep(seconds)


# --------------------------------------------------------------------------- main flow


def run_pipeline(bundle: Path, phantom: Path, workdir: Path) -> list[Path]:
    """olvf-infer --dicom on a phantom; return [source, SC, SR]."""
    venv_bin = Path(sys.executable).parent
    infer = shutil.which("olvf-infer", path=str(venv_bin)) or shutil.which("olvf-infer")
    if infer is None:
        raise RuntimeError("olvf-infer not found")
    out = workdir / "infer"
    subprocess.run(
        [infer, "--bundle", str(bundle), "--dicom", "--out", str(out), "--force", str(phantom)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    sc = sorted(out.rglob("olvf_sc.dcm"))
    sr = sorted(out.rglob("olvf_sr.dcm"))
    if not sc or not sr:
        raise RuntimeError(f"olvf-infer wrote no olvf_sc.dcm / olvf_sr.dcm under {out}")
    return [phantom, sc[0], sr[0]]


def screenshots(files: list[Path], out: Path, ohif_dist: Path, workdir: Path, timeout: float = 45) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("Chromium not found")
    result: dict = {"files": {}}
    with orthanc(workdir) as obase:
        info = store(obase, files)
        uid = info["MainDicomTags"]["StudyInstanceUID"]
        result["study_uid"] = uid
        with web_server(ohif_dist, obase) as wbase:
            b = Browser(chromium, workdir)
            try:
                b.open_page()
                # 1. study list
                b.goto(wbase + "/")
                b.wait_for(
                    "document.body && document.body.innerText.includes('PHANTOM')",
                    timeout,
                    "the study list to show the phantom study",
                )
                settle(1.0)
                p = out / "study-list.png"
                b.screenshot(p)
                result["files"]["study_list"] = p

                # 2. the study in the basic viewer; the hanging protocol picks the first image
                b.goto(f"{wbase}/viewer?StudyInstanceUIDs={uid}")
                b.wait_for(JS_CANVAS_DRAWN, timeout, "an image in the viewport")
                thumbnail_for(b, "SR")
                dismiss_tour(b)
                settle(2.0)
                p = out / "viewer-source.png"
                b.screenshot(p)
                result["files"]["viewer_source"] = p

                # 3. the Secondary Capture: double-click its thumbnail
                t = thumbnail_for(b, "OT")
                b.click(t["x"], t["y"], count=2)
                settle(1.0)
                b.wait_for(JS_CANVAS_DRAWN, timeout, "the SC in the viewport")
                settle(2.5)
                p = out / "viewer-sc.png"
                b.screenshot(p)
                result["files"]["viewer_sc"] = p

                # 4. the SR: double-click its thumbnail, OHIF's SR viewport takes over
                t = thumbnail_for(b, "SR")
                b.click(t["x"], t["y"], count=2)
                settle(4.0)
                p = out / "viewer-sr.png"
                b.screenshot(p)
                result["files"]["viewer_sr"] = p
                text = b.eval("document.body.innerText") or ""
                (out / "viewer-sr.txt").write_text(text)
                result["sr_text"] = text
                if "Something went wrong" in text:
                    result["sr_error"] = "OHIF showed 'Something went wrong' when loading the SR"
                    log(f"note: {result['sr_error']} (details in {out / 'console.log'})")
            finally:
                (out / "console.log").write_text("\n".join(b.console))
                b.close()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=Path, help="DICOM files to store (source image, olvf_sc.dcm, olvf_sr.dcm)")
    ap.add_argument("--bundle", type=Path, help="olvf bundle; with --phantom, run olvf-infer --dicom first")
    ap.add_argument("--phantom", type=Path, help="source image to run olvf-infer on (needs --bundle)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the PNG screenshots")
    ap.add_argument(
        "--ohif-dist",
        type=Path,
        default=DEFAULT_OHIF_DIST,
        help=f"OHIF build (dist/ of npm @ohif/app {OHIF_VERSION}); default {DEFAULT_OHIF_DIST}",
    )
    ap.add_argument("--workdir", type=Path, help="keep Orthanc's database and logs here (default: temporary)")
    ap.add_argument("--timeout", type=float, default=45, help="seconds to wait for each view")
    args = ap.parse_args(argv)

    missing = missing_requirements(args.ohif_dist)
    if missing:
        ap.error("missing: " + "; ".join(missing))
    if bool(args.bundle) != bool(args.phantom):
        ap.error("--bundle and --phantom go together")
    if not args.files and not args.phantom:
        ap.error("give the DICOM files to store, or --bundle and --phantom")

    with contextlib.ExitStack() as stack:
        if args.workdir:
            workdir = args.workdir
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="olvf-viewer-")))
        files = [f.resolve() for f in args.files]
        if args.phantom:
            files = run_pipeline(args.bundle, args.phantom.resolve(), workdir) + files
        res = screenshots(files, args.out, args.ohif_dist, workdir, args.timeout)
    for k, v in res["files"].items():
        print(f"{k}: {v}")
    if "sr_error" in res:
        print(f"sr_error: {res['sr_error']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
