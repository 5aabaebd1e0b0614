//! The web console: the single-page app built from `console/` (TypeScript, bundled by
//! esbuild into `console/dist/`) and compiled into the binary, so a control plane serves it
//! with no Node.js at run time and no other files to install.
//!
//! `GET /` redirects to `/console/`, which serves the app's page; `/console/assets/{file}`
//! its script and style sheet. The app talks to the REST API of the same origin with the
//! tokens of `/auth/login`, which it keeps in memory only.
//!
//! Console responses carry their own Content-Security-Policy (scripts, styles and requests
//! to this origin only, no inline code, no framing); the router's middleware leaves it in
//! place and gives every other response `default-src 'none'`.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use super::error::AppError;

/// The policy of every console response. No `'unsafe-inline'` anywhere: the page has no
/// inline script or style, and charts style their elements through the CSSOM.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; font-src 'self'; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file: its path under `console/dist/`, content type and bytes. The build
/// (`console/build.mjs`) writes exactly these names, without content hashes, so the list is
/// fixed and `include_bytes!` makes cargo rebuild when any of them changes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const INDEX: Asset = Asset {
    path: "index.html",
    content_type: "text/html; charset=utf-8",
    bytes: include_bytes!("../../../console/dist/index.html"),
};

const ASSETS: &[Asset] = &[
    Asset {
        path: "console.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../../console/dist/assets/console.js"),
    },
    Asset {
        path: "console.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../../console/dist/assets/console.css"),
    },
    Asset {
        path: "icon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../../../console/dist/assets/icon.svg"),
    },
];

/// The console's routes, merged into the API router: static files, outside the API's
/// access layer and OpenAPI document (the page logs in through the API like any client).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(|| async { serve(&INDEX) }))
        .route("/console/assets/{file}", get(asset))
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.path == file) {
        Some(a) => serve(a),
        None => AppError::not_found(format!(
            "no console asset {:?}",
            file.chars().take(80).collect::<String>()
        ))
        .into_response(),
    }
}

fn serve(asset: &Asset) -> Response {
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
        ],
        asset.bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn call(path: &str) -> Response {
        router::<()>()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("response")
    }

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_with_their_types_and_policy() {
        let r = call("/").await;
        assert!(r.status().is_redirection(), "{}", r.status());
        assert_eq!(r.headers()[header::LOCATION], "/console/");
        for (path, ty) in [
            ("/console/", "text/html; charset=utf-8"),
            (
                "/console/assets/console.js",
                "text/javascript; charset=utf-8",
            ),
            ("/console/assets/console.css", "text/css; charset=utf-8"),
            ("/console/assets/icon.svg", "image/svg+xml"),
        ] {
            let r = call(path).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], ty, "{path}");
            assert_eq!(
                r.headers()[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY,
                "{path}"
            );
        }
        for path in ["/console/assets/nope.js", "/console/assets/..%2Findex.html"] {
            assert_eq!(call(path).await.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let html = std::str::from_utf8(INDEX.bytes).expect("utf-8");
        assert!(html.contains(r#"<script type="module" src="/console/assets/console.js">"#));
        assert!(!html.contains("<style"), "{html}");
        assert!(!html.contains("style="), "{html}");
        let scripts = html.matches("<script").count();
        assert_eq!(
            scripts,
            html.matches("<script type=\"module\" src=").count()
        );
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }
}
