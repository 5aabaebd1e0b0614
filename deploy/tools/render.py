#!/usr/bin/env python3
"""Render the Helm chart into plain manifests, one file per template.

    deploy/tools/render.py --helm HELM [--out deploy/kubernetes] [-- EXTRA HELM ARGS]

Runs the real `helm template` (Go templates are not re-implemented here) with
release name and namespace "smartcloudops" and the chart's default values, and
splits the output by its "# Source:" comments into OUT/<template file name>.
deploy/kubernetes is this script's output; deploy/check.sh renders again into
a temporary directory and diffs. Files of OUT that no template produces (the
hand-written 00-namespace.yaml) are left alone.
"""

import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CHART = os.path.normpath(os.path.join(HERE, "..", "helm", "smartcloudops"))
RELEASE = "smartcloudops"
NAMESPACE = "smartcloudops"
HEADER = (
    "# Generated from deploy/helm/smartcloudops (default values) by deploy/tools/render.py:\n"
    "#   helm template {release} deploy/helm/smartcloudops --namespace {ns}\n"
    "# deploy/check.sh diffs these files against a fresh render: change the chart and render\n"
    "# again. To install, copy the directory and edit the copy (agent-secret.yaml).\n"
)


def render(helm, extra):
    cmd = [helm, "template", RELEASE, CHART, "--namespace", NAMESPACE, *extra]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out.stdout


def split(text):
    """Maps template file name -> list of YAML documents (in order)."""
    files = {}
    for doc in re.split(r"^---\s*$", text, flags=re.M):
        doc = doc.strip("\n")
        if not doc.strip():
            continue
        m = re.search(r"^# Source: [^/]+/templates/(.+)$", doc, flags=re.M)
        if not m:
            sys.exit(f"render.py: a document has no '# Source:' line:\n{doc[:200]}")
        body = re.sub(r"^# Source: .*\n", "", doc, count=1, flags=re.M)
        files.setdefault(os.path.basename(m.group(1)), []).append(body.rstrip() + "\n")
    return files


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--helm", default="helm")
    ap.add_argument("--out", default=os.path.normpath(os.path.join(HERE, "..", "kubernetes")))
    ap.add_argument("extra", nargs="*", help="extra helm template arguments (after --)")
    args = ap.parse_args()
    files = split(render(args.helm, args.extra))
    os.makedirs(args.out, exist_ok=True)
    for name, docs in sorted(files.items()):
        with open(os.path.join(args.out, name), "w") as f:
            f.write(HEADER.format(release=RELEASE, ns=NAMESPACE))
            f.write("---\n" + "---\n".join(docs))
    print(f"render.py: wrote {len(files)} files to {args.out}: {', '.join(sorted(files))}")


if __name__ == "__main__":
    main()
