"""The portal: server-rendered pages (catalog, dashboards, status) and /metrics.

Thin: every page reads through the other domains' services; the helpers here only shape data
for templates (money, charts, code snippets)."""
