//! The web app's files: how long a browser may keep each.
//!
//! A file whose name carries its content's hash (Trunk's app files, and the
//! worker's glue and wasm, see `cargo xtask web`) never changes under that
//! name: a browser keeps it for a year without asking again. Anything else
//! (`index.html`, the worker's loader) is checked on every use, so a new
//! build is seen at once.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// `Cache-Control` of a content-hashed file.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of any other file of the app.
const REVALIDATE: &str = "no-cache";

/// Whether a path names a content-hashed file: `-` then 16 hex digits just
/// before the extension (or before `_bg.wasm`).
pub fn is_hashed(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or_default();
    let stem = name.split('.').next().unwrap_or_default();
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    stem.rsplit_once('-')
        .is_some_and(|(_, hash)| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Sets the cache policy of a successful answer by the name asked for.
pub async fn cache_policy(request: Request, next: Next) -> Response {
    let hashed = is_hashed(request.uri().path());
    let mut response = next.run(request).await;
    if response.status().is_success() {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(if hashed { IMMUTABLE } else { REVALIDATE }),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hashed_names_are_kept_for_good() {
        for hashed in [
            "/oblivion-app-39cb5659fc2b0571.js",
            "/oblivion-app-39cb5659fc2b0571_bg.wasm",
            "/style-1aada8a87c4c9ffe.css",
            "/oblivion-worker-wasm-0123456789abcdef_bg.wasm",
        ] {
            assert!(is_hashed(hashed), "{hashed}");
        }
        for plain in [
            "/",
            "/index.html",
            "/oblivion-worker-wasm_loader.js",
            "/jobs/12",
            "/oblivion-app-39cb5659fc2b05.js",
            "/oblivion-app-39cb5659fc2b057z.js",
        ] {
            assert!(!is_hashed(plain), "{plain}");
        }
    }
}
