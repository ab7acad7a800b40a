"""The documentation site (docs/): it builds with warnings as errors, its getting-started page
carries the README's two commands verbatim, and its pages render in headless Chromium with no
console error, no failed resource and the content they promise (the tutorial's real output, one
CLI section per command)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _need(what: str, reason: str) -> None:
    if _in_ci():
        pytest.fail(f"{reason}, and CI=true: .ci/run must install {what}")
    pytest.skip(reason)


def _sphinx() -> None:
    for module in ("sphinx", "myst_parser", "sphinx_click"):
        try:
            __import__(module)
        except ImportError:
            _need("the docs extra", f"{module} is not installed (pip install -e '.[docs]'); needed to build the docs")


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        _need("Debian's chromium", "headless chromium not installed (apt-get install chromium); needed to render the docs")
    return exe


def readme_commands() -> list[str]:
    """The README's two set-up commands: the bash blocks after its two 'Set up and run' lines."""
    text = README.read_text()
    found = re.findall(r"^Set up and run[^\n]*:\n\n```bash\n(.+?)\n```", text, re.M | re.S)
    assert len(found) == 2, "README.md no longer starts with its two 'Set up and run' commands"
    return found


def test_getting_started_carries_the_readme_commands():
    page = (DOCS / "getting-started.md").read_text()
    for command in readme_commands():
        assert f"```bash\n{command}\n```" in page, f"docs/getting-started.md lacks the README command {command!r}"


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory) -> Path:
    """The site, built from docs/ as CI builds it: every warning an error."""
    _sphinx()
    base = tmp_path_factory.mktemp("docs")
    out = base / "html"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d", str(base / "doctrees"),
           str(DOCS), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, f"sphinx-build failed (rc {proc.returncode}):\n{proc.stderr[-6000:]}"
    return out


@pytest.mark.slow
def test_docs_build_with_warnings_as_errors(built_docs):
    for page in ("index", "getting-started", "tutorial", "cli", "api", "plugins", "science", "changelog"):
        assert (built_docs / f"{page}.html").is_file(), page


# Injected first into <head>: records every console.error / console.warn, uncaught exception,
# unhandled rejection and resource that failed to load, and at `load` what rendered, into
# <pre id="doccheck"> (read back from chromium's --dump-dom).
PROBE = """<script>
(function () {
  var report = {errors: [], warnings: [], loaded: false};
  function write() {
    if (!document.body) return;
    var el = document.getElementById("doccheck");
    if (!el) { el = document.createElement("pre"); el.id = "doccheck"; el.hidden = true; document.body.appendChild(el); }
    el.textContent = JSON.stringify(report);
  }
  function text(args) { return Array.prototype.map.call(args, String).join(" "); }
  var error = console.error, warn = console.warn;
  console.error = function () { report.errors.push("console.error: " + text(arguments)); write(); error.apply(console, arguments); };
  console.warn = function () { report.warnings.push("console.warn: " + text(arguments)); write(); warn.apply(console, arguments); };
  window.addEventListener("error", function (e) {
    var t = e.target;
    if (t && t !== window && (t.src || t.href)) report.errors.push("failed to load " + (t.src || t.href));
    else report.errors.push("uncaught: " + e.message + " (" + e.filename + ":" + e.lineno + ")");
    write();
  }, true);
  window.addEventListener("unhandledrejection", function (e) { report.errors.push("unhandled rejection: " + e.reason); write(); });
  window.addEventListener("load", function () {
    report.loaded = true;
    report.h1 = Array.prototype.map.call(document.querySelectorAll("[role=main] h1"), function (h) { return h.textContent.replace(/\\u00b6/g, "").trim(); });
    report.stylesheets = Array.prototype.map.call(document.querySelectorAll("link[rel=stylesheet]"), function (l) { return {href: l.getAttribute("href"), loaded: !!l.sheet}; });
    report.scripts = Array.prototype.map.call(document.querySelectorAll("script[src]"), function (s) { return s.getAttribute("src"); });
    report.images = Array.prototype.map.call(document.images, function (i) { return {src: i.getAttribute("src"), width: i.naturalWidth, complete: i.complete}; });
    var body = document.querySelector("div.body") || document.body;
    report.bodyWidth = body.getBoundingClientRect().width;
    var pre = document.querySelector("div.highlight pre");
    report.codeFont = pre ? getComputedStyle(pre).fontFamily : null;
    write();
  });
})();
</script>"""


def render_unchecked(built: Path, page: str, tmp_path: Path) -> tuple[dict, str]:
    """Open ``page`` of the built site (with the probe injected, beside the original so that
    relative links resolve) in headless Chromium; return the probe's report and the DOM."""
    exe = _chromium()
    source = (built / page).read_text()
    assert "<head>" in source
    probed = built / f"_probe_{page}"
    probed.write_text(source.replace("<head>", "<head>" + PROBE, 1))
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / ('profile-' + page)}", "--enable-logging=stderr", "--v=0",
            "--window-size=1280,2000", "--dump-dom", probed.resolve().as_uri()]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=180)
    m = re.search(r'<pre id="doccheck"[^>]*>(.*?)</pre>', proc.stdout, re.S)
    assert m, f"{page}: the probe wrote nothing (rc {proc.returncode}): {proc.stderr[-2000:]}"
    report = json.loads(html.unescape(m.group(1)))
    assert report["loaded"], f"{page}: the load event never fired"
    report["stderr_uncaught"] = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line and "Uncaught" in line]
    return report, proc.stdout


def render(built: Path, page: str, tmp_path: Path) -> tuple[dict, str]:
    report, dom = render_unchecked(built, page, tmp_path)
    assert report["stderr_uncaught"] == [], f"{page}: {report['stderr_uncaught']}"
    return report, dom


def assert_clean(page: str, report: dict) -> None:
    assert report["errors"] == [], f"{page}: {report['errors']}"
    assert report["warnings"] == [], f"{page}: {report['warnings']}"
    assert report["stylesheets"] and all(s["loaded"] for s in report["stylesheets"]), report["stylesheets"]
    if report["codeFont"] is not None:  # code blocks in a monospace font: the theme's styles applied
        assert "mono" in report["codeFont"].lower(), f"{page}: code is set in {report['codeFont']}"
    assert report["bodyWidth"] > 400, f"{page}: the page body is {report['bodyWidth']} px wide"
    for image in report["images"]:
        assert image["complete"] and image["width"] > 0, f"{page}: image {image['src']} did not load"


def visible_text(dom: str) -> str:
    """The page's text, whitespace runs as one space (tags dropped: highlighted code is split
    into spans that carry their own spaces)."""
    dom = re.sub(r"<(script|style|pre id=\"doccheck\")\b.*?</(script|style|pre)>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", dom)))


@pytest.mark.slow
@pytest.mark.browser
def test_index_tutorial_and_cli_pages_render_without_console_errors(built_docs, tmp_path):
    from distfold.cli.main import COMMANDS

    report, dom = render(built_docs, "index.html", tmp_path)
    assert_clean("index.html", report)
    assert report["h1"] == ["distfold"]
    links = set(re.findall(r'href="([^"#]+)"', dom))
    assert {"tutorial.html", "cli.html"} <= links, f"the index does not link the tutorial and the CLI: {sorted(links)}"

    report, dom = render(built_docs, "tutorial.html", tmp_path)
    assert_clean("tutorial.html", report)
    assert report["h1"] == ["Tutorial: predict, compare, read the report"]
    text = visible_text(dom)
    for expected in ("$ distfold predict -i examples/example.fasta -o predictions --html",
                     "$ distfold compare predictions/example.pdb examples/example.pdb",
                     "1 predicted, 0 skipped, 0 failed of 1 records -> predictions"):
        assert expected in text, expected
    assert re.search(r"TM-score\s+0\.\d{4}", text), "the tutorial lost compare's real output"
    assert len(report["images"]) >= 2 and all("tutorial/" not in i["src"] or i["width"] > 600 for i in report["images"])

    report, dom = render(built_docs, "cli.html", tmp_path)
    assert_clean("cli.html", report)
    assert report["h1"] == ["Command-line reference"]
    text = visible_text(dom)
    assert "distfold [OPTIONS] COMMAND [ARGS]" in text and "--version" in text
    for name in COMMANDS:  # one generated section per command, with its usage line
        assert f"distfold {name} [OPTIONS]" in text, f"the CLI reference lacks `distfold {name}`"
    assert "--reconstruct" in text and "--html" in text


@pytest.mark.browser
def test_the_probe_sees_console_errors_failed_loads_and_exceptions(tmp_path):
    """The render check can fail: a page with a console.error, a missing script and an uncaught
    exception reports all three."""
    page = tmp_path / "broken.html"
    page.write_text("<html><head><title>t</title></head><body><div role=\"main\"><h1>Broken</h1></div>"
                    "<script>console.error('boom');</script><script src=\"missing.js\"></script>"
                    "<script>notDefined();</script></body></html>")
    report, _ = render_unchecked(tmp_path, page.name, tmp_path)
    errors = " | ".join(report["errors"])
    assert "console.error: boom" in errors and "missing.js" in errors and "notDefined" in errors, errors
    assert report["h1"] == ["Broken"]
