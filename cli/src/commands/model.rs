//! `model upload`, `model rollout` and `model status [--watch]`: the model registry.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::policy::{follow, progress, rollout_note, Followed};
use super::{emit, emit_json, Ctx};
use crate::cli::{ModelRolloutArgs, ModelStatusArgs, ModelUploadArgs};
use crate::client::{segment, Body};
use crate::render::{cell, labels, Table};

/// A file of the model directory: its text, or `None` when it is optional and absent.
fn read_text(dir: &Path, name: &str, required: bool) -> anyhow::Result<Option<String>> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

fn parse_json(dir: &Path, name: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("{} is not JSON", dir.join(name).display()))
}

/// The `POST /models` body from a model directory, as the README's `jq` example builds
/// it: the manifest, the model file it names (base64), the golden outputs, and the card
/// and evaluation when the directory has them.
pub fn upload_body(dir: &Path) -> anyhow::Result<Value> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let text = read_text(dir, "manifest.json", true)?.unwrap_or_default();
    let manifest = parse_json(dir, "manifest.json", &text)?;
    let Some(file) = manifest["file"].as_str() else {
        bail!(
            "{}: no `file` naming the model file",
            dir.join("manifest.json").display()
        );
    };
    // The model file sits beside its manifest; a path elsewhere is not what the agents
    // would find either.
    if file.is_empty() || file.contains(['/', '\\']) || file == "." || file == ".." {
        bail!(
            "{}: `file` {file:?} is not a file name in the same directory",
            dir.join("manifest.json").display()
        );
    }
    let onnx_path = dir.join(file);
    let onnx = std::fs::read(&onnx_path)
        .with_context(|| format!("read {} (the manifest's `file`)", onnx_path.display()))?;
    let text = read_text(dir, "golden.json", true)?.unwrap_or_default();
    let golden = parse_json(dir, "golden.json", &text)?;
    let mut body = json!({
        "manifest": manifest,
        "golden": golden,
        "onnx_base64": base64::engine::general_purpose::STANDARD.encode(onnx),
    });
    if let Some(card) = read_text(dir, "MODEL_CARD.md", false)? {
        body["card"] = json!(card);
    }
    if let Some(text) = read_text(dir, "evaluation.json", false)? {
        body["evaluation"] = parse_json(dir, "evaluation.json", &text)?;
    }
    Ok(body)
}

pub fn upload(ctx: &Ctx, args: &ModelUploadArgs) -> anyhow::Result<()> {
    // Everything is read and checked before the server is asked.
    let body = upload_body(&args.dir)?;
    let mut api = ctx.api()?;
    let v = api
        .post("/models", &Body::Json(body))
        .with_context(|| format!("upload {}", args.dir.display()))?;
    if ctx.json() {
        return emit_json(&v);
    }
    let m = &v["model"];
    let sha = cell(&m["sha256"]);
    emit(&format!(
        "model {} {} stored as number {} (sha256 {})\nroll it out with: scoctl model rollout {}\n",
        cell(&m["name"]),
        cell(&m["version"]),
        cell(&m["number"]),
        sha.get(..12).unwrap_or(sha.as_str()),
        cell(&m["version"]),
    ))
}

/// The `POST /models/{version}/rollout` body: only what was given (the server's
/// defaults otherwise).
pub fn rollout_body(args: &ModelRolloutArgs) -> Value {
    let mut body = json!({});
    if !args.canary_hosts.is_empty() {
        body["canary_hosts"] = json!(args.canary_hosts);
    } else if let Some(p) = args.canary_percent {
        body["canary_percent"] = json!(p);
    }
    if let Some(s) = args.canary_secs {
        body["canary_secs"] = json!(s);
    }
    if let Some(n) = args.max_new_anomalies {
        body["max_new_anomalies"] = json!(n);
    }
    if !args.labels.is_empty() || !args.hosts.is_empty() {
        let labels: Map<String, Value> = args
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let mut target = json!({ "labels": labels });
        if !args.hosts.is_empty() {
            target["hosts"] = json!(args.hosts);
        }
        body["target"] = target;
    }
    body
}

/// `role=web, hosts a, b`; `every host` for none.
pub fn target_text(target: &Value) -> String {
    let mut parts = Vec::new();
    let l = labels(&target["labels"]);
    if !l.is_empty() {
        parts.push(l);
    }
    let hosts: Vec<String> = target["hosts"]
        .as_array()
        .map(|h| h.iter().map(cell).collect())
        .unwrap_or_default();
    if !hosts.is_empty() {
        parts.push(format!("hosts {}", hosts.join(",")));
    }
    if parts.is_empty() {
        "every host".into()
    } else {
        parts.join(" ")
    }
}

pub fn rollout(ctx: &Ctx, args: &ModelRolloutArgs) -> anyhow::Result<()> {
    let mut api = ctx.api()?;
    let v = api.post(
        &format!("/models/{}/rollout", segment(&args.model)),
        &Body::Json(rollout_body(args)),
    )?;
    if ctx.json() {
        return emit_json(&v);
    }
    let r = &v["rollout"];
    let canaries = r["canary_hosts"]
        .as_array()
        .map(|h| h.iter().map(cell).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    emit(&format!(
        "model {}: rollout {} {} for {} (canary {})\nfollow it with: scoctl model status {} --watch\n",
        args.model,
        cell(&r["id"]),
        cell(&r["state"]),
        target_text(&r["target"]),
        if canaries.is_empty() {
            "none".to_string()
        } else {
            format!("{canaries} for {} s", cell(&r["canary_secs"]))
        },
        args.model,
    ))
}

/// Whether the newest model rollout is of this version.
fn rollout_is_of(status: &Value) -> bool {
    !status["rollout"].is_null() && status["rollout"]["revision"] == status["number"]
}

fn model_name(n: &Value) -> String {
    if n == 0 {
        "own".into()
    } else {
        cell(n)
    }
}

fn status_text(status: &Value, connected: &HashSet<String>) -> String {
    let r = &status["rollout"];
    let head = format!(
        "model {} (number {})",
        cell(&status["version"]),
        cell(&status["number"])
    );
    let mut out = if r.is_null() {
        format!("{head}: no model rollout yet\n")
    } else if !rollout_is_of(status) {
        format!(
            "{head}: the newest model rollout is of number {} ({})\n",
            cell(&r["revision"]),
            cell(&r["state"])
        )
    } else {
        let note = rollout_note(r);
        format!(
            "{head}: rollout {} {} for {} (previous model {}){note}\n",
            cell(&r["id"]),
            cell(&r["state"]),
            target_text(&r["target"]),
            model_name(&r["previous_revision"]),
        )
    };
    let mut t = Table::new(&[
        "HOST",
        "CONNECTED",
        "CANARY",
        "MEANT",
        "REPORTED",
        "RUNNING",
        "IN SYNC",
        "ERROR",
    ]);
    for h in status["hosts"].as_array().map_or(&[][..], Vec::as_slice) {
        let id = cell(&h["host_id"]);
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let running = match (cell(&h["applied_model"]), &h["applied_number"]) {
            (m, n) if m.is_empty() => model_name(n),
            (m, n) => format!("{} ({m})", model_name(n)),
        };
        t.row([
            id.clone(),
            yes_no(connected.contains(&id)).into(),
            yes_no(h["canary"] == true).into(),
            model_name(&h["desired_number"]),
            model_name(&h["reported_number"]),
            running,
            yes_no(h["in_sync"] == true).into(),
            cell(&h["error"]),
        ]);
    }
    if t.is_empty() {
        out.push_str("no host concerned\n");
    } else {
        out.push_str(&t.render());
    }
    out
}

pub fn status(ctx: &Ctx, args: &ModelStatusArgs) -> anyhow::Result<()> {
    let mut api = ctx.api()?;
    let version = args.model.clone();
    let path = format!("/models/{}/status", segment(&version));
    follow(
        ctx,
        &mut api,
        &args.watch,
        &Followed {
            subject: format!("model {version}"),
            never: format!("model {version} has never been rolled out"),
            previous: "model",
        },
        |api| api.get(&path, &[]),
        status_text,
        |status, connected| {
            if !status["rollout"].is_null() && !rollout_is_of(status) {
                bail!(
                    "the newest model rollout is of number {}, not of {version}: nothing to watch",
                    cell(&status["rollout"]["revision"])
                );
            }
            Ok(progress(status, connected))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/shipped")
    }

    #[test]
    fn the_shipped_directory_makes_the_readme_body() {
        let body = upload_body(&shipped()).expect("shipped model");
        assert_eq!(body["manifest"]["file"], "sco-window-pca.onnx");
        let onnx = std::fs::read(shipped().join("sco-window-pca.onnx")).expect("onnx");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(body["onnx_base64"].as_str().expect("base64"))
            .expect("decodes");
        assert_eq!(decoded, onnx);
        assert!(body["golden"].is_object() || body["golden"].is_array());
        assert!(body["card"].as_str().is_some_and(|c| !c.is_empty()));
        assert!(!body["evaluation"].is_null());
    }

    #[test]
    fn bad_directories_are_named() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = tmp.path();
        let e = upload_body(&d.join("nope"))
            .expect_err("missing")
            .to_string();
        assert!(e.contains("is not a directory"), "{e}");
        let e = format!("{:#}", upload_body(d).expect_err("no manifest"));
        assert!(e.contains("manifest.json"), "{e}");
        std::fs::write(d.join("manifest.json"), "{not json").expect("write");
        let e = format!("{:#}", upload_body(d).expect_err("bad json"));
        assert!(e.contains("manifest.json is not JSON"), "{e}");
        std::fs::write(d.join("manifest.json"), r#"{"file": "../x.onnx"}"#).expect("write");
        let e = format!("{:#}", upload_body(d).expect_err("path"));
        assert!(e.contains("not a file name"), "{e}");
        std::fs::write(d.join("manifest.json"), r#"{"file": "m.onnx"}"#).expect("write");
        let e = format!("{:#}", upload_body(d).expect_err("no onnx"));
        assert!(e.contains("m.onnx (the manifest's `file`)"), "{e}");
        std::fs::write(d.join("m.onnx"), b"\x08\x01").expect("write");
        let e = format!("{:#}", upload_body(d).expect_err("no golden"));
        assert!(e.contains("golden.json"), "{e}");
        std::fs::write(d.join("golden.json"), "{}").expect("write");
        let body = upload_body(d).expect("minimal");
        assert!(body.get("card").is_none() && body.get("evaluation").is_none());
        assert_eq!(body["onnx_base64"], "CAE=");
        std::fs::write(d.join("evaluation.json"), "[").expect("write");
        let e = format!("{:#}", upload_body(d).expect_err("bad evaluation"));
        assert!(e.contains("evaluation.json is not JSON"), "{e}");
    }

    #[test]
    fn rollout_bodies_carry_only_what_was_given() {
        let mut args = ModelRolloutArgs {
            model: "1.1.0".into(),
            canary_percent: None,
            canary_hosts: vec![],
            canary_secs: None,
            max_new_anomalies: None,
            labels: vec![],
            hosts: vec![],
        };
        assert_eq!(rollout_body(&args), json!({}));
        args.canary_percent = Some(50);
        args.canary_secs = Some(3);
        args.max_new_anomalies = Some(0);
        args.labels = vec![("role".into(), "web".into())];
        args.hosts = vec!["web-1".into()];
        assert_eq!(
            rollout_body(&args),
            json!({"canary_percent": 50, "canary_secs": 3, "max_new_anomalies": 0,
                   "target": {"labels": {"role": "web"}, "hosts": ["web-1"]}})
        );
        assert_eq!(
            target_text(&rollout_body(&args)["target"]),
            "role=web hosts web-1"
        );
        assert_eq!(target_text(&Value::Null), "every host");
        args.canary_hosts = vec!["web-2".into()];
        assert_eq!(rollout_body(&args)["canary_hosts"], json!(["web-2"]));
        assert!(rollout_body(&args).get("canary_percent").is_none());
    }

    #[test]
    fn status_rows_name_the_models_per_host() {
        let status = json!({"number": 2, "version": "2.0.0", "rollout": {
        "id": "mr-1", "revision": 2, "previous_revision": 0, "state": "complete",
        "reason": "canary healthy", "target": {"labels": {"role": "web"}}},
        "hosts": [
            {"host_id": "a", "desired_number": 2, "canary": true, "reported_number": 2,
             "applied_number": 2, "applied_model": "pca@2.0.0", "error": "", "in_sync": true},
            {"host_id": "b", "desired_number": 2, "canary": false, "reported_number": 0,
             "applied_number": 0, "applied_model": "", "error": "bad signature", "in_sync": false},
        ]});
        let up: HashSet<String> = ["a".to_string()].into();
        assert_eq!(
            status_text(&status, &up),
            "model 2.0.0 (number 2): rollout mr-1 complete for role=web (previous model own): canary healthy\n\
             HOST  CONNECTED  CANARY  MEANT  REPORTED  RUNNING        IN SYNC  ERROR\n\
             a     yes        yes     2      2         2 (pca@2.0.0)  yes\n\
             b     no         no      2      own       own            no       bad signature\n"
        );
        let mut other = status.clone();
        other["number"] = json!(1);
        assert!(status_text(&other, &up).starts_with(
            "model 2.0.0 (number 1): the newest model rollout is of number 2 (complete)\n"
        ));
    }
}
