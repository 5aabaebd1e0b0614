//! `GET /openapi.json`: the OpenAPI 3 document. Its operations come from the handlers'
//! own `#[utoipa::path]` declarations, collected by the router itself (`http::app`), so
//! every route is in it; [`finish`] adds the bearer scheme and ends each operation's
//! description with the role its declaration names ([`super::access`]), the same rule the
//! access layer enforces. `tests/tests/roles.rs` calls every operation with every role.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::Extension;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;

use super::access::{Access, AccessTable, SCHEME};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "SmartCloudOps control plane",
        description = "REST API of the SmartCloudOps control plane. Errors are JSON `{\"error\": message}` \
            with a 4xx status naming the problem. Access tokens are short-lived JWTs (HS256) sent as \
            `Authorization: Bearer`; refresh them with `POST /auth/refresh`. Request bodies are strict \
            JSON (unknown fields are refused) of at most 64 KiB (4 MiB for `POST /anomaly`). \
            Each operation's `security` names the role it needs as the bearer scope."
    ),
    tags(
        (name = "service", description = "health, status, metrics, this document"),
        (name = "auth", description = "users, login, tokens"),
        (name = "fleet", description = "hosts and their metrics, also for Prometheus"),
        (name = "anomaly", description = "anomaly events and scoring"),
        (name = "enrollment", description = "enrollment tokens and host revocation"),
        (name = "remediation", description = "remediation actions and the audit log"),
        (name = "policies", description = "signed fleet policies and their rollouts"),
        (name = "models", description = "the model registry: signed model versions, their rollouts and what each host runs"),
        (name = "chatops", description = "questions and actions in plain words"),
        (name = "runbooks", description = "the knowledge base"),
        (name = "notifications", description = "what people were told, and silences"),
    )
)]
pub struct ApiDoc;

/// The served document, built once at start.
#[derive(Clone)]
pub struct Document(pub Arc<str>);

/// Declares the bearer scheme and the schema of roles (`crate::auth::role_schema`), and ends
/// each operation's description with its role.
pub fn finish(doc: &mut utoipa::openapi::OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.schemas.insert(
        crate::auth::ROLE_SCHEMA.to_string(),
        crate::auth::role_schema().into(),
    );
    components.add_security_scheme(
        SCHEME,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in operations.into_iter().flatten() {
            let security = op
                .security
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok());
            let line = match Access::from_security(security.as_ref()) {
                Ok(access) => access.describe(),
                Err(reason) => format!("Refused: no usable access declaration ({reason})."),
            };
            op.description = Some(match op.description.take() {
                Some(d) if !d.is_empty() => format!("{d}\n\n{line}"),
                _ => line,
            });
        }
    }
}

/// The access rule of every operation of a finished document.
pub fn access_table(doc: &utoipa::openapi::OpenApi) -> AccessTable {
    AccessTable::from_document(&serde_json::to_value(doc).unwrap_or_default())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "service", security(()),
    responses((status = 200, description = "the OpenAPI 3 document", body = Object)))]
pub async fn document(Extension(doc): Extension<Document>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real router's document: every operation declares a usable access rule, and the
    /// operations the role matrix test expects are there.
    #[test]
    fn every_route_declares_its_role() {
        let (_, doc) = super::super::routes().split_for_parts();
        let table = access_table(&doc);
        assert!(
            table.undeclared().is_empty(),
            "routes without an access declaration: {:?}",
            table.undeclared()
        );
        let count = table.iter().count();
        assert!(count >= 34, "only {count} operations");
        let json = serde_json::to_value(&doc).expect("json");
        assert_eq!(json["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        for (method, path, access) in [
            ("GET", "/health", Access::Public),
            ("GET", "/openapi.json", Access::Public),
            (
                "POST",
                "/auth/register",
                Access::Optional(crate::auth::Role::Admin),
            ),
            ("GET", "/auth/verify", Access::Any),
            (
                "GET",
                "/hosts/{id}",
                Access::Role(crate::auth::Role::Viewer),
            ),
            (
                "POST",
                "/remediation/actions/{id}/approve",
                Access::Role(crate::auth::Role::Operator),
            ),
            ("GET", "/audit", Access::Role(crate::auth::Role::Admin)),
        ] {
            assert_eq!(
                table.get(method, path),
                Some(&Ok(access)),
                "{method} {path}"
            );
        }
    }
    /// The README's route table is an overview for readers; this keeps it true to the
    /// declarations: every operation is in it with its role, and it names no route that is not.
    #[test]
    fn the_readme_route_table_matches_the_declarations() {
        use crate::auth::Role;
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("\n## REST API\n")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("README has a REST API section");
        let (_, doc) = super::super::routes().split_for_parts();
        let table = access_table(&doc);
        let mut listed = std::collections::BTreeSet::new();
        for row in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.split(" | ").collect();
            let role = cells.get(1).copied().unwrap_or_default();
            let want = match role.split([' ', ',']).next().unwrap_or_default() {
                "none" => None,
                "any" => Some(Access::Any),
                "viewer" => Some(Access::Role(Role::Viewer)),
                "operator" => Some(Access::Role(Role::Operator)),
                "admin" => Some(Access::Role(Role::Admin)),
                other => panic!("README row {row:?}: unknown role {other:?}"),
            };
            for op in cells[0].trim_start_matches("| ").split(", ") {
                let op = op.trim_matches('`');
                let (method, path) = op.split_once(' ').expect("METHOD /path");
                let path = path.split('?').next().unwrap_or(path);
                let got = table.get(method, path);
                let ok = match (&want, got) {
                    (None, Some(Ok(Access::Public))) => true,
                    (Some(Access::Role(r)), Some(Ok(Access::Optional(o)))) => r == o,
                    (Some(w), Some(Ok(g))) => w == g,
                    _ => false,
                };
                assert!(
                    ok,
                    "README says {method} {path} is for {role:?}; declared: {got:?}"
                );
                listed.insert((method.to_string(), path.to_string()));
            }
        }
        let missing: Vec<_> = table
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| !listed.contains(k))
            .collect();
        assert!(
            missing.is_empty(),
            "operations missing from the README table: {missing:?}"
        );
    }
}
