"""Copy-paste code for calling an endpoint through the gateway, generated from its definition."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::path)?\}")
WITH_BODY = {"POST", "PUT", "PATCH"}
LANGUAGES = (("curl", "curl"), ("python", "Python"), ("javascript", "JavaScript"), ("go", "Go"))


@dataclass(frozen=True)
class Snippet:
    language: str  # curl | python | javascript | go
    label: str
    code: str


def example_path(template: str) -> str:
    """`/forecast/{city}` → `/forecast/CITY`: placeholders a reader sees at once and replaces."""
    return _PARAM.sub(lambda m: m.group(1).upper(), template if template.startswith("/") else "/" + template)


def snippets(base_url: str, slug: str, method: str, path: str) -> list[Snippet]:
    url = f"{base_url.rstrip('/')}/gateway/{slug}{example_path(path)}"
    method = method.upper()
    body = method in WITH_BODY
    u = json.dumps(url)
    curl = [f"curl -X {method} {u}", '  -H "X-API-Key: $MARKETPLACE_API_KEY"']
    if body:
        curl += ['  -H "Content-Type: application/json"', "  -d '{}'"]
    python = ["import os", "", "import httpx", "", f"response = httpx.request({json.dumps(method)}, {u},",
              '                          headers={"X-API-Key": os.environ["MARKETPLACE_API_KEY"]},']
    if body:
        python.append("                          json={},")
    python += ["                          timeout=30)", "response.raise_for_status()", "print(response.json())"]
    js = [f"const response = await fetch({u}, {{", f"  method: {json.dumps(method)},",
          "  headers: {", '    "X-API-Key": process.env.MARKETPLACE_API_KEY,']
    if body:
        js.append('    "Content-Type": "application/json",')
    js.append("  },")
    if body:
        js.append("  body: JSON.stringify({}),")
    js += ["});", "if (!response.ok) throw new Error(`HTTP ${response.status}`);", "console.log(await response.json());"]
    go_body = 'strings.NewReader("{}")' if body else "nil"
    go = ["package main", "", "import (", '\t"fmt"', '\t"io"', '\t"net/http"', '\t"os"']
    if body:
        go.append('\t"strings"')
    go += [")", "", "func main() {", f"\treq, err := http.NewRequest({json.dumps(method)}, {u}, {go_body})",
           "\tif err != nil {", "\t\tpanic(err)", "\t}", '\treq.Header.Set("X-API-Key", os.Getenv("MARKETPLACE_API_KEY"))']
    if body:
        go.append('\treq.Header.Set("Content-Type", "application/json")')
    go += ["\tresp, err := http.DefaultClient.Do(req)", "\tif err != nil {", "\t\tpanic(err)", "\t}",
           "\tdefer resp.Body.Close()", "\tbody, _ := io.ReadAll(resp.Body)", "\tfmt.Println(resp.Status, string(body))",
           "}"]
    codes = {"curl": " \\\n".join(curl), "python": "\n".join(python), "javascript": "\n".join(js), "go": "\n".join(go)}
    return [Snippet(lang, label, codes[lang]) for lang, label in LANGUAGES]
