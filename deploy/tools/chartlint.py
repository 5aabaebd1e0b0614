#!/usr/bin/env python3
"""Static checks of the Helm chart and the rendered manifests, without helm.

    deploy/tools/chartlint.py            (from the repository root; needs PyYAML)

1. Chart.yaml has the fields a v2 chart needs (apiVersion, name = directory,
   SemVer version, appVersion, type, kubeVersion).
2. Every `.Values.a.b` a template names (directly, or through a variable set
   with `$x := .Values.a`) exists in values.yaml.
3. Every template except helpers has its rendered file in deploy/kubernetes,
   and every rendered file comes from a template (or is 00-namespace.yaml).
4. The TOML in the rendered ConfigMaps parses, and every table and key in it
   is a field of the Rust config structs (agent/src/config.rs,
   control-plane/src/config.rs): a typo the binaries would refuse
   (deny_unknown_fields) fails here first.
5. When release or debug binaries exist in target/, the rendered configs go
   through the real `sco-agent validate` and `sco-control-plane validate`.

Exits non-zero naming every problem.
"""

import os
import re
import subprocess
import sys
import tempfile
import tomllib

import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CHART = os.path.join(ROOT, "deploy", "helm", "smartcloudops")
RENDERED = os.path.join(ROOT, "deploy", "kubernetes")
HAND_WRITTEN = {"00-namespace.yaml"}

problems = []


def problem(msg):
    problems.append(msg)
    print(f"FAIL {msg}")


def ok(msg):
    print(f"ok   {msg}")


def check_chart_yaml():
    with open(os.path.join(CHART, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    if chart.get("apiVersion") != "v2":
        problem(f"Chart.yaml: apiVersion is {chart.get('apiVersion')!r}, not v2")
    if chart.get("name") != os.path.basename(CHART):
        problem(f"Chart.yaml: name {chart.get('name')!r} is not the directory name")
    if not re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?", str(chart.get("version", ""))):
        problem(f"Chart.yaml: version {chart.get('version')!r} is not SemVer 2")
    for key in ("appVersion", "description", "type", "kubeVersion"):
        if not chart.get(key):
            problem(f"Chart.yaml: {key} missing")
    if chart.get("type") not in (None, "application", "library"):
        problem(f"Chart.yaml: type {chart.get('type')!r}")
    if not problems:
        ok(f"Chart.yaml: {chart['name']} {chart['version']} (appVersion {chart['appVersion']})")
    return chart


def lookup(values, path):
    node = values
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def check_values_refs():
    with open(os.path.join(CHART, "values.yaml")) as f:
        values = yaml.safe_load(f)
    tdir = os.path.join(CHART, "templates")
    refs = 0
    before = len(problems)
    for name in sorted(os.listdir(tdir)):
        text = open(os.path.join(tdir, name)).read()
        aliases = {}
        for m in re.finditer(r"\$(\w+)\s*:=\s*\$?\.Values((?:\.\w+)+)", text):
            aliases[m.group(1)] = m.group(2).strip(".").split(".")
        for m in re.finditer(r"\$?\.Values((?:\.\w+)+)", text):
            path = m.group(1).strip(".").split(".")
            refs += 1
            if not lookup(values, path):
                problem(f"templates/{name}: .Values.{'.'.join(path)} is not in values.yaml")
        for var, base in aliases.items():
            for m in re.finditer(r"\$" + var + r"((?:\.\w+)+)", text):
                path = base + m.group(1).strip(".").split(".")
                refs += 1
                if not lookup(values, path):
                    problem(f"templates/{name}: ${var}{m.group(1)} (.Values.{'.'.join(path)}) is not in values.yaml")
    if len(problems) == before:
        ok(f"values: all {refs} references in templates/ exist in values.yaml")


def check_rendered_files():
    tdir = os.path.join(CHART, "templates")
    templates = {n for n in os.listdir(tdir) if n.endswith(".yaml") and not n.startswith("_")}
    rendered = {n for n in os.listdir(RENDERED) if n.endswith(".yaml")}
    before = len(problems)
    for n in sorted(templates - rendered):
        problem(f"deploy/kubernetes/{n} missing (render the chart: deploy/tools/render.py)")
    for n in sorted(rendered - templates - HAND_WRITTEN):
        problem(f"deploy/kubernetes/{n} comes from no template")
    if len(problems) == before:
        ok(f"deploy/kubernetes: one file per template ({len(templates)}) + {', '.join(sorted(HAND_WRITTEN))}")


def rust_schema(path):
    """struct name -> {field: type} for every `pub struct` of a config.rs."""
    text = open(path).read()
    structs = {}
    for m in re.finditer(r"pub struct (\w+)\s*\{(.*?)\n\}", text, flags=re.S):
        fields = {}
        for f in re.finditer(r"^\s*pub (\w+):\s*([^,\n]+),", m.group(2), flags=re.M):
            fields[f.group(1)] = f.group(2).strip()
        structs[m.group(1)] = fields
    return structs


def check_toml_keys(doc, structs, where):
    before = len(problems)

    def walk(table, struct, prefix):
        fields = structs[struct]
        for key, value in table.items():
            name = f"{prefix}{key}"
            if key not in fields:
                problem(f"{where}: {name} is not a field of {struct}")
                continue
            ty = fields[key]
            inner = re.sub(r"^Option<(.*)>$", r"\1", ty)
            if isinstance(value, dict):
                if inner in structs:
                    walk(value, inner, name + ".")
                elif not inner.startswith("BTreeMap<"):
                    problem(f"{where}: {name} is a table but {struct}.{key} is {ty}")
            elif inner in structs:
                problem(f"{where}: {name} must be a table ({inner})")

    walk(doc, "Config", "")
    if len(problems) == before:
        ok(f"{where}: every key is a field of the Rust config structs")


def rendered_configs():
    out = {}
    for name in sorted(os.listdir(RENDERED)):
        with open(os.path.join(RENDERED, name)) as f:
            for doc in yaml.safe_load_all(f):
                if doc and doc.get("kind") == "ConfigMap":
                    for key, text in (doc.get("data") or {}).items():
                        if key.endswith(".toml"):
                            out[key] = text
    return out


def find_binary(name):
    for profile in ("release", "debug"):
        p = os.path.join(ROOT, "target", profile, name)
        if os.access(p, os.X_OK):
            return p
    return None


def check_configs():
    configs = rendered_configs()
    schemas = {
        "agent.toml": rust_schema(os.path.join(ROOT, "agent", "src", "config.rs")),
        "control-plane.toml": rust_schema(os.path.join(ROOT, "control-plane", "src", "config.rs")),
    }
    for key, structs in schemas.items():
        if key not in configs:
            problem(f"no ConfigMap in deploy/kubernetes carries {key}")
            continue
        try:
            doc = tomllib.loads(configs[key])
        except tomllib.TOMLDecodeError as e:
            problem(f"{key} (rendered ConfigMap) is not valid TOML: {e}")
            continue
        ok(f"{key}: valid TOML ({len(doc)} top-level keys/tables)")
        check_toml_keys(doc, structs, key)

    # The real parsers, when someone built them.
    env = {"PATH": "/usr/bin:/bin"}
    agent = find_binary("sco-agent")
    cp = find_binary("sco-control-plane")
    with tempfile.TemporaryDirectory() as tmp:
        if agent and "agent.toml" in configs:
            cfg = os.path.join(tmp, "agent.toml")
            open(cfg, "w").write(configs["agent.toml"])
            # validate checks that the identity files exist; the init container
            # writes them on a node, so stand-ins are pointed at here.
            for f in ("ca.pem", "agent.pem", "agent.key"):
                open(os.path.join(tmp, f), "w").write("stand-in\n")
            e = dict(env, SCO_AGENT_CA=f"{tmp}/ca.pem", SCO_AGENT_CERT=f"{tmp}/agent.pem",
                     SCO_AGENT_KEY=f"{tmp}/agent.key")
            r = subprocess.run([agent, "validate", "--config", cfg], env=e, capture_output=True, text=True)
            if r.returncode == 0:
                ok(f"agent.toml: `{os.path.relpath(agent, ROOT)} validate` accepts it")
            else:
                problem(f"agent.toml: `sco-agent validate` refused it: {r.stderr.strip()}")
        else:
            print("note target/*/sco-agent not built: agent.toml not checked by `sco-agent validate`")
        if cp and "control-plane.toml" in configs:
            cfg = os.path.join(tmp, "control-plane.toml")
            open(cfg, "w").write(configs["control-plane.toml"])
            r = subprocess.run([cp, "validate", "--config", cfg], env=env, capture_output=True, text=True)
            if r.returncode == 0:
                ok(f"control-plane.toml: `{os.path.relpath(cp, ROOT)} validate` accepts it")
            else:
                problem(f"control-plane.toml: `sco-control-plane validate` refused it: {r.stderr.strip()}")
        else:
            print("note target/*/sco-control-plane not built: control-plane.toml not checked by `sco-control-plane validate`")


def main():
    check_chart_yaml()
    check_values_refs()
    check_rendered_files()
    check_configs()
    if problems:
        print(f"chartlint: {len(problems)} problem(s)")
        sys.exit(1)
    print("chartlint: ok")


if __name__ == "__main__":
    main()
