//! The web dashboard, embedded in the binary: `/` is its page, `/dashboard/*` its modules,
//! styles and the vendored chart library, each linked relative to the page so that it works
//! under `serve --base-path`. Plain files from `web/dashboard/` and
//! `web/vendor/`, no build step. The page reads the admin API with the session cookie.

use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Scripts, styles, images and requests from this origin only; never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'";

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

macro_rules! web {
    ($path:literal) => {
        include_str!(concat!("../../../../web/", $path))
    };
}

const INDEX: &str = web!("dashboard/index.html");

/// Every asset under `/dashboard/`: path, content type, body.
pub const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", JS, web!("dashboard/app.js")),
    ("api.js", JS, web!("dashboard/api.js")),
    ("state.js", JS, web!("dashboard/state.js")),
    ("ui.js", JS, web!("dashboard/ui.js")),
    ("charts.js", JS, web!("dashboard/charts.js")),
    ("controls.js", JS, web!("dashboard/controls.js")),
    ("pages/overview.js", JS, web!("dashboard/pages/overview.js")),
    ("pages/crashes.js", JS, web!("dashboard/pages/crashes.js")),
    ("pages/cloud.js", JS, web!("dashboard/pages/cloud.js")),
    ("pages/live.js", JS, web!("dashboard/pages/live.js")),
    ("pages/data.js", JS, web!("dashboard/pages/data.js")),
    ("app.css", CSS, web!("dashboard/app.css")),
    (
        "favicon.svg",
        "image/svg+xml",
        web!("dashboard/favicon.svg"),
    ),
    (
        "vendor/uplot/uPlot.iife.min.js",
        JS,
        web!("vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "vendor/uplot/uPlot.min.css",
        CSS,
        web!("vendor/uplot/uPlot.min.css"),
    ),
];

/// `/`: the page.
pub async fn index() -> Response {
    page(HTML, INDEX, "no-cache")
}

/// `/dashboard/{*path}`: its modules, styles and the chart library.
pub async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        // Revalidated on every load: an upgraded collector serves its own files at once.
        Some((_, kind, body)) => page(kind, body, "no-cache"),
        None => {
            let mut res = (StatusCode::NOT_FOUND, "no such dashboard file").into_response();
            secure(&mut res);
            res
        }
    }
}

fn page(kind: &'static str, body: &'static str, cache: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    secure(&mut res);
    res
}

fn secure(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_served() {
        let mut sources: Vec<&str> = ASSETS.iter().map(|(_, _, b)| *b).collect();
        sources.push(INDEX);
        for body in sources {
            for part in body.split(['\'', '"']) {
                let Some(rel) = part
                    .strip_prefix("dashboard/")
                    .or_else(|| part.strip_prefix("./"))
                    .or_else(|| part.strip_prefix("../"))
                else {
                    continue;
                };
                if !(rel.ends_with(".js") || rel.ends_with(".css") || rel.ends_with(".svg")) {
                    continue;
                }
                assert!(
                    ASSETS
                        .iter()
                        .any(|(p, _, _)| *p == rel || p.ends_with(&format!("/{rel}"))),
                    "{rel} is referenced but not embedded"
                );
            }
        }
    }

    #[test]
    fn the_page_links_nothing_by_absolute_path() {
        // An absolute link would miss the base path the collector is served under (API
        // paths go through api.js, which makes them relative).
        let mut sources: Vec<&str> = ASSETS.iter().map(|(_, _, b)| *b).collect();
        sources.push(INDEX);
        for body in sources {
            for bad in ["\"/dashboard/", "'/dashboard/", "`/dashboard/"] {
                assert!(!body.contains(bad), "an absolute link {bad}...");
            }
        }
    }

    #[test]
    fn pages_carry_the_security_headers() {
        let res = page(HTML, INDEX, "no-cache");
        let h = res.headers();
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
        assert!(CSP.contains("frame-ancestors 'none'"));
        assert!(!CSP.contains("unsafe"));
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
}
