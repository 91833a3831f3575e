#!/usr/bin/env python3
"""Real Helm (v4 engine from helm-python-sdk) for arc-rs: template, lint, install.

Run it with the python of the environment made by helm-venv.py.

  helm-render.py template CHART [--release R] [--namespace N] [-f FILE]... [--set K=V]...
                 [--set-string K=V]... [--set-json K=JSON]... [--values-json JSON]
                 [--kubeconfig PATH] [--kube-version V] [--output yaml|json]
  helm-render.py lint CHART [-f FILE]... [--set ...] [--strict] [--namespace N]
  helm-render.py install CHART --kubeconfig PATH [--release R] [--namespace N] [values options]
  helm-render.py upgrade CHART --kubeconfig PATH [--release R] [--namespace N] [values options]
  helm-render.py uninstall --kubeconfig PATH --release R [--namespace N]
  helm-render.py crds CHART [--output yaml|json]

`template` prints the manifests like `helm template` does (YAML, one `# Source:` comment per
document) or, with `--output json`, one JSON object
{"manifests": [{"source": PATH, "object": {...}}], "notes": TEXT}. Without --kubeconfig the
render is offline (`lookup` finds nothing, as in `helm template`); with it, `lookup` and the
capabilities come from that cluster, except the Kubernetes version, which the SDK leaves at
Helm's default: pass the cluster's with --kube-version (e.g. v1.37.2). Values are merged like the helm CLI: files in order, then
--values-json, then every --set form in order. Failures exit 1 with `Error: <message>` on stderr.
"""

import argparse
import json
import os
import re
import sys

try:
    import helm_python
    from helm_python.chart import Chart, lint, values_from_yaml
    from helm_python.config import Config
    from helm_python import _native
except ImportError as err:
    sys.stderr.write(
        f"Error: helm-python-sdk is not importable ({err}); "
        "fix: run this script with the python printed by xtask/scripts/helm-venv.py\n"
    )
    sys.exit(2)

DOC_SPLIT = re.compile(r"^---[ \t]*$", re.MULTILINE)


def merge(base: dict, override: dict) -> dict:
    """Deep-merge maps the way helm merges several values sources."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


class SetAction(argparse.Action):
    """Keep every --set form in command-line order."""

    def __call__(self, parser, namespace, values, option_string=None):
        sets = getattr(namespace, "sets", None) or []
        sets.append((option_string, values))
        namespace.sets = sets


def user_values(args) -> dict:
    values: dict = {}
    for path in args.values or []:
        with open(path, encoding="utf-8") as f:
            values = merge(values, values_from_yaml(f.read()) or {})
    if args.values_json:
        values = merge(values, json.loads(args.values_json))
    parsers = {
        "--set": helm_python.parse_set_string,
        "--set-string": helm_python.parse_set_string_values,
        "--set-json": helm_python.parse_set_json,
    }
    for option, expression in getattr(args, "sets", None) or []:
        values = merge(values, parsers[option](expression))
    return values


def split_documents(source: str, text: str) -> list:
    docs = []
    for part in DOC_SPLIT.split(text):
        meaningful = [l for l in part.splitlines() if l.strip() and not l.lstrip().startswith("#")]
        if not meaningful:
            continue
        obj = values_from_yaml(part)
        if obj:
            docs.append({"source": source, "text": part.strip("\n"), "object": obj})
    return docs


def render(args) -> dict:
    values = user_values(args)
    release = args.release
    opts = {"name": release, "namespace": args.namespace, "is_install": True}
    if args.kube_version:
        opts["kube_version"] = args.kube_version
    payload = None if values is None else json.dumps(values)
    # The SDK's render methods do not take kube_version; its native calls do.
    with Chart.load(args.chart) as chart:
        if args.kubeconfig:
            with Config(kubeconfig_path=args.kubeconfig, namespace=args.namespace) as cfg:
                raw = _native.call_string("helm_render_with_config", cfg._raw(), chart._raw(), payload, json.dumps(opts))
        else:
            raw = _native.call_string("helm_render", chart._raw(), payload, json.dumps(opts))
        rendered = json.loads(raw)
    manifests = []
    notes = ""
    for source in sorted(rendered):
        if source.endswith("NOTES.txt"):
            notes = rendered[source]
            continue
        if os.path.basename(source).startswith("_"):
            continue
        manifests.extend(split_documents(source, rendered[source]))
    return {"manifests": manifests, "notes": notes}


def cmd_template(args) -> None:
    result = render(args)
    if args.output == "json":
        out = {
            "manifests": [{"source": m["source"], "object": m["object"]} for m in result["manifests"]],
            "notes": result["notes"],
        }
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
        return
    for m in result["manifests"]:
        sys.stdout.write(f"---\n# Source: {m['source']}\n{m['text']}\n")


def cmd_crds(args) -> None:
    """The CRDs Helm installs from the chart's crds/ folder."""
    with Chart.load(args.chart) as chart:
        crds = chart.crds
    docs = []
    for crd in sorted(crds, key=lambda c: c.get("filename") or c.get("name") or ""):
        docs.extend(split_documents(crd.get("filename") or crd.get("name") or "", crd.get("data") or ""))
    if args.output == "json":
        json.dump({"manifests": [{"source": d["source"], "object": d["object"]} for d in docs]}, sys.stdout)
        sys.stdout.write("\n")
        return
    for d in docs:
        sys.stdout.write(f"---\n# Source: {d['source']}\n{d['text']}\n")


def cmd_lint(args) -> None:
    report = lint(args.chart, user_values(args), strict=args.strict or None, namespace=args.namespace)
    failed = False
    for msg in report.get("messages", []):
        level = {1: "INFO", 2: "WARNING", 3: "ERROR"}.get(msg.get("severity"), "UNKNOWN")
        print(f"[{level}] {msg.get('path')}: {msg.get('error')}")
        if msg.get("severity") == 3 or (args.strict and msg.get("severity") == 2):
            failed = True
    for err in report.get("errors", []):
        print(f"[ERROR] {err}")
        failed = True
    print(f"{report.get('total_charts_linted', 0)} chart(s) linted, {'failed' if failed else 'no failures'}")
    if failed:
        sys.exit(1)


def cmd_install(args) -> None:
    with Chart.load(args.chart) as chart, Config(kubeconfig_path=args.kubeconfig, namespace=args.namespace) as cfg:
        release = cfg.install(chart, args.release, user_values(args), namespace=args.namespace, timeout=args.timeout)
    json.dump(release, sys.stdout, default=str)
    sys.stdout.write("\n")


def cmd_upgrade(args) -> None:
    with Chart.load(args.chart) as chart, Config(kubeconfig_path=args.kubeconfig, namespace=args.namespace) as cfg:
        release = cfg.upgrade(chart, args.release, user_values(args), namespace=args.namespace, timeout=args.timeout)
    json.dump(release, sys.stdout, default=str)
    sys.stdout.write("\n")


def cmd_uninstall(args) -> None:
    with Config(kubeconfig_path=args.kubeconfig, namespace=args.namespace) as cfg:
        result = cfg.uninstall(args.release, timeout=args.timeout)
    json.dump(result, sys.stdout, default=str)
    sys.stdout.write("\n")


def values_options(p) -> None:
    p.add_argument("-f", "--values", action="append", help="values file (repeatable)")
    p.add_argument("--values-json", help="values as one JSON object")
    for flag in ("--set", "--set-string", "--set-json"):
        p.add_argument(flag, action=SetAction, dest="sets", metavar="K=V")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("template")
    t.add_argument("chart")
    t.add_argument("--release", default="release-name")
    t.add_argument("--namespace", default="default")
    t.add_argument("--kubeconfig")
    t.add_argument("--kube-version", help="Kubernetes version for .Capabilities, e.g. v1.37.2")
    t.add_argument("--output", choices=("yaml", "json"), default="yaml")
    values_options(t)

    l = sub.add_parser("lint")
    l.add_argument("chart")
    l.add_argument("--namespace")
    l.add_argument("--strict", action="store_true")
    values_options(l)

    i = sub.add_parser("install")
    i.add_argument("chart")
    i.add_argument("--release", default="release-name")
    i.add_argument("--namespace", default="default")
    i.add_argument("--kubeconfig", required=True)
    i.add_argument("--timeout", type=int, default=120)
    values_options(i)

    g = sub.add_parser("upgrade")
    g.add_argument("chart")
    g.add_argument("--release", default="release-name")
    g.add_argument("--namespace", default="default")
    g.add_argument("--kubeconfig", required=True)
    g.add_argument("--timeout", type=int, default=120)
    values_options(g)

    u = sub.add_parser("uninstall")
    u.add_argument("--release", required=True)
    u.add_argument("--namespace", default="default")
    u.add_argument("--kubeconfig", required=True)
    u.add_argument("--timeout", type=int, default=120)

    c = sub.add_parser("crds")
    c.add_argument("chart")
    c.add_argument("--output", choices=("yaml", "json"), default="yaml")

    args = parser.parse_args()
    handlers = {
        "template": cmd_template,
        "lint": cmd_lint,
        "install": cmd_install,
        "upgrade": cmd_upgrade,
        "uninstall": cmd_uninstall,
        "crds": cmd_crds,
    }
    try:
        handlers[args.command](args)
    except helm_python.HelmError as err:
        sys.stderr.write(f"Error: {err}\n")
        sys.exit(1)
    except (OSError, ValueError) as err:
        sys.stderr.write(f"Error: {err}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
