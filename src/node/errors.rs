//! The one mapping from core errors to JS errors: an `Error` (a `TypeError` for invalid
//! options) whose `code` is the documented string. Messages are already secret-free.

use napi::bindgen_prelude::{JsValue, Unknown};
use napi::{Env, JsError, JsTypeError};

use crate::core::error::Error as CoreError;

/// Builds the JS error for `e` as a `napi::Error` that throws/rejects with exactly that object.
pub fn js_error(env: &Env, e: &CoreError) -> napi::Error {
    let base = napi::Error::new(e.code(), e.to_string());
    let value: Unknown = match e {
        CoreError::InvalidOption(_) => JsTypeError::from(base).into_unknown(*env),
        _ => JsError::from(base).into_unknown(*env),
    };
    // `napi_create_error` sets `code` from the status string; make sure it is a plain property.
    if let Ok(mut obj) = value.coerce_to_object() {
        let _ = obj.set("code", e.code());
    }
    napi::Error::from(value)
}

/// The JS error for `e` as a value (for event payloads and diagnostics messages, which carry
/// the error instead of throwing it).
pub fn js_error_value<'e>(env: &'e Env, e: &CoreError) -> napi::Result<Unknown<'e>> {
    let err = js_error(env, e);
    // SAFETY: plain conversions on the JS thread of `env`.
    unsafe {
        let raw = napi::bindgen_prelude::ToNapiValue::to_napi_value(env.raw(), err)?;
        napi::bindgen_prelude::FromNapiValue::from_napi_value(env.raw(), raw)
    }
}
