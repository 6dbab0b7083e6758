//! Calls to the coordinator's REST API.

use oblivion_protocol::api::ApiError;
use serde::de::DeserializeOwned;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Headers, RequestInit, Response};

fn unreachable(e: JsValue) -> ApiError {
    ApiError {
        error: format!(
            "cannot reach the coordinator: {}",
            e.as_string().unwrap_or_else(|| "network error".into())
        ),
        field: None,
    }
}

async fn call(
    method: &str,
    url: &str,
    body: Option<&JsValue>,
    content_type: &str,
) -> Result<(u16, String), ApiError> {
    let window = web_sys::window().ok_or_else(|| unreachable(JsValue::NULL))?;
    let init = RequestInit::new();
    init.set_method(method);
    if let Some(body) = body {
        let headers = Headers::new().map_err(unreachable)?;
        headers
            .set("content-type", content_type)
            .map_err(unreachable)?;
        init.set_headers(&headers);
        init.set_body(body);
    }
    let response: Response = JsFuture::from(window.fetch_with_str_and_init(url, &init))
        .await
        .map_err(unreachable)?
        .unchecked_into();
    let text = JsFuture::from(response.text().map_err(unreachable)?)
        .await
        .map_err(unreachable)?
        .as_string()
        .unwrap_or_default();
    Ok((response.status(), text))
}

fn decode<T: DeserializeOwned>((status, text): (u16, String)) -> Result<T, ApiError> {
    if (200..300).contains(&status) {
        serde_json::from_str(&text).map_err(|e| ApiError {
            error: format!("unexpected answer from the coordinator: {e}"),
            field: None,
        })
    } else {
        Err(serde_json::from_str(&text).unwrap_or(ApiError {
            error: format!("the coordinator answered {status}"),
            field: None,
        }))
    }
}

/// `GET url` as JSON.
pub async fn get<T: DeserializeOwned>(url: &str) -> Result<T, ApiError> {
    decode(call("GET", url, None, "").await?)
}

/// `GET url` as bytes (a blob).
pub async fn get_bytes(url: &str) -> Result<Vec<u8>, ApiError> {
    let window = web_sys::window().ok_or_else(|| unreachable(JsValue::NULL))?;
    let response: Response = JsFuture::from(window.fetch_with_str(url))
        .await
        .map_err(unreachable)?
        .unchecked_into();
    if !response.ok() {
        return Err(ApiError {
            error: format!("the coordinator answered {} for {url}", response.status()),
            field: None,
        });
    }
    let buffer = JsFuture::from(response.array_buffer().map_err(unreachable)?)
        .await
        .map_err(unreachable)?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// `POST url` with a JSON text body.
pub async fn post_json<T: DeserializeOwned>(url: &str, json: &str) -> Result<T, ApiError> {
    decode(
        call(
            "POST",
            url,
            Some(&JsValue::from_str(json)),
            "application/json",
        )
        .await?,
    )
}

/// `POST url` with a file as the body.
pub async fn post_file<T: DeserializeOwned>(
    url: &str,
    file: &web_sys::File,
) -> Result<T, ApiError> {
    decode(call("POST", url, Some(file.as_ref()), "application/octet-stream").await?)
}

/// `POST url` without a body, ignoring any answer but its status.
pub async fn post_empty(url: &str) -> Result<(), ApiError> {
    let (status, text) = call("POST", url, None, "").await?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(serde_json::from_str(&text).unwrap_or(ApiError {
            error: format!("the coordinator answered {status}"),
            field: None,
        }))
    }
}
