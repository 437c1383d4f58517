//! The browser script, embedded in the binary: `/static/anonstats.js` (a plain script that
//! defines `window.anonstats`) and `/static/anonstats.mjs` (the same as an ES module).
//! Both are built from `web/anonstats.js` into `web/dist/` and committed.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// `web/dist/anonstats.min.js`: an IIFE that sets `window.anonstats`.
pub const ANONSTATS_JS: &str = include_str!("../../../../web/dist/anonstats.min.js");
/// `web/dist/anonstats.min.mjs`: the ES module.
pub const ANONSTATS_MJS: &str = include_str!("../../../../web/dist/anonstats.min.mjs");

const CONTENT_TYPE: &str = "text/javascript; charset=utf-8";
/// An hour: long enough to spare the collector, short enough that an upgrade shows soon.
const CACHE_CONTROL: &str = "public, max-age=3600";

/// `/static/anonstats.js`.
pub async fn script_js() -> Response {
    script(ANONSTATS_JS)
}

/// `/static/anonstats.mjs`.
pub async fn script_mjs() -> Response {
    script(ANONSTATS_MJS)
}

fn script(body: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Dashboards on any origin load it, as a module too (which needs CORS); it is public.
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        axum::http::HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("cross-origin"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_embedded_and_labelled() {
        assert!(ANONSTATS_JS.starts_with("var anonstats="));
        assert!(ANONSTATS_MJS.contains("export{"));
        let res = script(ANONSTATS_JS);
        assert_eq!(res.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        assert_eq!(res.headers()[header::CACHE_CONTROL], CACHE_CONTROL);
    }
}
