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
