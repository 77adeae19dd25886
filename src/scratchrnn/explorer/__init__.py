"""The explorer page: plain HTML, CSS and JavaScript shipped inside the package (no CDN, no build step).

``scratchrnn serve`` serves it at ``/`` with its assets under ``/static/`` and answers its calls under
``/api/``; ``scratchrnn explain`` writes it as one file with the assets and the data inside (``page``
with ``data``), which a browser opens with no network at all. ``bundle`` turns the analyses into the JSON
the page reads, the same in both.
"""
from __future__ import annotations

import json
from importlib import resources

# asset name -> media type; the scripts in the order the page loads them
ASSETS = {"style.css": "text/css", "charts.js": "text/javascript", "app.js": "text/javascript"}
SCRIPTS = ("charts.js", "app.js")


def asset(name: str) -> str:
    if name not in ASSETS and name != "index.html":
        raise ValueError(f"no asset {name!r}")
    return (resources.files(__name__) / name).read_text(encoding="utf-8")


def _inline_script(source: str) -> str:
    # a script's text ends at the first "</script" whatever its context: keep none inside
    return "<script>\n" + source.replace("</script", "<\\/script") + "\n</script>"


def page(data: dict | None = None) -> str:
    """The page: linking its assets (served), or with them and ``data`` inline (a file)."""
    html = asset("index.html")
    if data is None:
        style = '<link rel="stylesheet" href="/static/style.css">'
        scripts = "\n".join(f'<script src="/static/{name}"></script>' for name in SCRIPTS)
        embedded = ""
    else:
        style = f"<style>\n{asset('style.css')}\n</style>"
        scripts = "\n".join(_inline_script(asset(name)) for name in SCRIPTS)
        # JSON inside HTML: "<" escaped, so that no "</script>" or "<!--" in the text can end the element
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
        embedded = f'<script type="application/json" id="embedded-data">{text}</script>'
    return (html.replace("<!--STYLE-->", style).replace("<!--SCRIPTS-->", scripts)
            .replace("<!--DATA-->", embedded))
