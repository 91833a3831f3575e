#!/usr/bin/env python3
"""Digests of ARC's interface facts, for the test data under tests/suites/data/arc-0.14.2/.

Only facts are printed (schema paths, required fields, markers, values keys and their example
values), never ARC's text or comments. Usage, from the workspace root, with ARC mirrored:

  ARC=/work/.mirror/actions+actions-runner-controller/repo
  for k in autoscalinglisteners autoscalingrunnersets ephemeralrunners ephemeralrunnersets; do
    git -C $ARC show 9bb16ae:config/crd/bases/actions.github.com_$k.yaml; echo ---
  done | python3 xtask/scripts/arc-facts.py crd > tests/suites/data/arc-0.14.2/crd-facts.tsv
  for c in gha-runner-scale-set-controller gha-runner-scale-set; do
    git -C $ARC show 9bb16ae:charts/$c/values.yaml \
      | python3 xtask/scripts/arc-facts.py values > tests/suites/data/arc-0.14.2/values-$c.tsv
  done

crd: per kind and schema path, `required`, `list-type`, `list-map-keys`, `map-type` and
`format`. Paths join property names with '.', '[]' marks array items, '{}' map values.

values: every key path of the live values and of the commented-out examples (lines commented
with a single '#'; '##' lines are prose). A block of commented lines that parses as YAML is an
example; it sits under the nearest live key indented less than it, or under the live key just
before it when that key's value is empty ({}, [], "" or nothing) and the block is not indented
less than that key. Output: path, origin (live|example), the value as JSON (scalars only;
"map" / "list" for collections but lists of short scalars; "<text>" for strings with spaces or longer than 60 characters).
"""
import json
import re
import sys

import yaml

HEADER = {
    "crd": "# kind\tpath\tfact\tvalue",
    "values": "# path\torigin\tvalue",
}


def crd_facts(text):
    out = set()

    def walk(kind, path, schema):
        if not isinstance(schema, dict):
            return
        if schema.get("required"):
            out.add(f"{kind}\t{path}\trequired\t{','.join(sorted(schema['required']))}")
        for key, name in (
            ("x-kubernetes-list-type", "list-type"),
            ("x-kubernetes-map-type", "map-type"),
            ("format", "format"),
        ):
            if key in schema:
                out.add(f"{kind}\t{path}\t{name}\t{schema[key]}")
        if "x-kubernetes-list-map-keys" in schema:
            keys = ",".join(schema["x-kubernetes-list-map-keys"])
            out.add(f"{kind}\t{path}\tlist-map-keys\t{keys}")
        for name, sub in (schema.get("properties") or {}).items():
            walk(kind, f"{path}.{name}" if path else name, sub)
        if isinstance(schema.get("items"), dict):
            walk(kind, path + "[]", schema["items"])
        if isinstance(schema.get("additionalProperties"), dict):
            walk(kind, path + "{}", schema["additionalProperties"])

    for doc in yaml.safe_load_all(text):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        kind = doc["spec"]["names"]["kind"]
        for version in doc["spec"]["versions"]:
            walk(kind, "", version["schema"]["openAPIV3Schema"])
    return sorted(out)


def shown(value):
    if isinstance(value, dict):
        return '"map"'
    if isinstance(value, list):
        if value and all(isinstance(v, (str, int, float)) and len(str(v)) <= 60 for v in value):
            return json.dumps(value)
        return '"list"'
    if isinstance(value, str) and (" " in value.strip() or len(value) > 60 or "\n" in value):
        return '"<text>"'
    return json.dumps(value)


def keys_of(value, prefix, origin, out):
    if isinstance(value, dict):
        for key, sub in value.items():
            if " " in str(key) or str(key)[:1].isupper():
                continue  # prose that happens to parse as a key ("Example: ...")
            path = f"{prefix}.{key}" if prefix else str(key)
            out.setdefault(path, (origin, shown(sub)))
            keys_of(sub, path, origin, out)
    elif isinstance(value, list):
        for item in value:
            keys_of(item, prefix + "[]", origin, out)


LIVE_KEY = re.compile(r"^(\s*)(-\s+)?([A-Za-z0-9_.\-]+):(.*)$")


YAML_LINE = re.compile(r'^\s*([A-Za-z0-9_.\-"]+:(\s|$)|-\s|[\[\]"0-9])')


def parse_block(texts):
    """The block as YAML; failing that, without its prose lines; None if neither parses."""
    for candidate in (texts, [t for t in texts if YAML_LINE.match(t)]):
        try:
            return yaml.safe_load("\n".join(candidate))
        except yaml.YAMLError:
            continue
    return None


def runs(marker, block):
    """A '#' block as is; a '##' block split into its YAML-looking runs: from a key or list line,
    the lines indented deeper than it or at its indentation and YAML-looking too."""
    if marker != "##":
        return [(marker, block)]
    out, i = [], 0
    while i < len(block):
        text = block[i][1]
        if not YAML_LINE.match(text):
            i += 1
            continue
        base = len(text) - len(text.lstrip())
        j = i + 1
        while j < len(block):
            t = block[j][1]
            ind = len(t) - len(t.lstrip())
            if ind > base or (ind == base and YAML_LINE.match(t)):
                j += 1
            else:
                break
        out.append((marker, block[i:j]))
        i = j
    return out


def values_facts(text):
    lines = text.splitlines()
    out = {}
    keys_of(yaml.safe_load(text) or {}, "", "live", out)
    # Live key lines: (line number, indent, path, empty value).
    live = []
    stack = []
    for number, line in enumerate(lines):
        if line.lstrip().startswith("#") or not line.strip():
            continue
        m = LIVE_KEY.match(line)
        if not m:
            continue
        indent = len(m.group(1)) + (len(m.group(2)) if m.group(2) else 0)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        name = m.group(3)
        parent = stack[-1][1] if stack else ""
        if m.group(2):
            parent += "[]"
        path = f"{parent}.{name}" if parent else name
        rest = m.group(4).split(" #")[0].strip()
        stack.append((indent, path))
        live.append((number, indent, path, rest))
    # Blocks of comment lines with the same marker ('#' or '##').
    blocks, current, marker = [], [], None
    for number, line in enumerate(lines):
        stripped = line.lstrip()
        this = "##" if stripped.startswith("##") else "#" if stripped.startswith("#") else None
        if current and this != marker:
            blocks.append((marker, current))
            current = []
        marker = this
        if this and stripped.strip("#").strip():
            column = len(line) - len(stripped)
            body = stripped[len(this):]
            body = body[1:] if body.startswith(" ") else body
            current.append((number, " " * column + body))
    if current:
        blocks.append((marker, current))
    for marker, block in [b for m, lines_ in blocks for b in runs(m, lines_)]:
        texts = [t for _, t in block]
        indent = min(len(t) - len(t.lstrip()) for t in texts)
        texts = [t[indent:] for t in texts]
        if not YAML_LINE.match(texts[0]):
            continue  # prose, maybe quoting a key
        if marker == "##":
            # Prose comments; a multi-line YAML document among them is an example.
            try:
                parsed = yaml.safe_load("\n".join(texts)) if len(texts) > 2 else None
            except yaml.YAMLError:
                parsed = None
        else:
            parsed = parse_block(texts)
        if not isinstance(parsed, (dict, list)):
            continue
        first = block[0][0]
        before = [entry for entry in live if entry[0] < first]
        parent = ""
        if before and before[-1][3] in ("", "{}", "[]") and indent >= before[-1][1]:
            parent = before[-1][2]
        else:
            for _, key_indent, path, rest in reversed(before):
                if key_indent < indent and rest in ("", "{}"):
                    parent = path
                    break
        if isinstance(parsed, dict) and list(parsed) == [parent.rsplit(".", 1)[-1]]:
            parent = parent.rpartition(".")[0]  # the example restates its own key
        keys_of(parsed, parent, "example", out)
    return [f"{path}\t{origin}\t{value}" for path, (origin, value) in sorted(out.items())]


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    text = sys.stdin.read()
    if mode == "crd":
        facts = crd_facts(text)
    elif mode == "values":
        facts = values_facts(text)
    else:
        sys.exit("usage: arc-facts.py crd|values < file (see the docstring)")
    print(f"# Generated by xtask/scripts/arc-facts.py {mode} from ARC 0.14.2 (9bb16ae); see its usage.")
    print(HEADER[mode])
    print("\n".join(facts))


if __name__ == "__main__":
    main()
