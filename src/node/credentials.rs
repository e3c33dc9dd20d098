//! The `credentials` option: the application's JS function, called on its JS thread through
//! the thread's one queue (see `runtime`), its result (a value or a promise) handed back to
//! the core's refresher. The refresher bounds every call, so a stalled event loop delays a
//! refresh but never blocks Redis traffic.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use napi::bindgen_prelude::{FnArgs, Function, FunctionRef, JsValue, Object, Unknown};
use napi::{Env, ValueType};
use tokio::sync::oneshot;

use crate::core::credentials::{CredentialSource, Creds, FetchFuture};
use crate::core::error::Error as CoreError;
use crate::core::redact::clip;
use crate::node::convert::{napi_err, Reader};
use crate::node::runtime::{self, Link};

type Provider = FunctionRef<(), Unknown<'static>>;

thread_local! {
    /// The providers of this JS thread's networks, by id.
    static PROVIDERS: RefCell<HashMap<u64, Provider>> = RefCell::new(HashMap::new());
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A JS credentials function, callable from the runtime.
pub struct JsCredentials {
    id: u64,
    link: Arc<Link>,
}

/// Reads the `credentials` option: absent, or a function (anything else is an invalid option).
pub fn read(env: &Env, r: &Reader) -> Result<Option<JsCredentials>, CoreError> {
    let Some(v) = r.raw("credentials")? else {
        return Ok(None);
    };
    if v.get_type().map_err(napi_err)? != ValueType::Function {
        return Err(CoreError::invalid(
            "credentials must be a function returning { username?, password, expiresAt? } or a promise of it",
        ));
    }
    let f = unsafe { v.cast::<Function<(), Unknown<'static>>>() }.map_err(napi_err)?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    PROVIDERS.with(|p| -> Result<(), CoreError> {
        p.borrow_mut().insert(id, f.create_ref().map_err(napi_err)?);
        Ok(())
    })?;
    Ok(Some(JsCredentials {
        id,
        link: runtime::js_thread_link(env).map_err(napi_err)?,
    }))
}

type Answer = Rc<RefCell<Option<oneshot::Sender<Result<Creds, String>>>>>;

fn answer(slot: &Answer, v: Result<Creds, String>) {
    if let Some(tx) = slot.borrow_mut().take() {
        let _ = tx.send(v);
    }
}

impl CredentialSource for JsCredentials {
    fn fetch(&self) -> FetchFuture {
        let (tx, rx) = oneshot::channel();
        let id = self.id;
        self.link.send(Box::new(move |env: &Env| {
            let slot: Answer = Rc::new(RefCell::new(Some(tx)));
            if let Err(why) = call(env, id, &slot) {
                answer(&slot, Err(why));
            }
        }));
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err("the JS thread is gone".to_string()))
        })
    }
}

impl Drop for JsCredentials {
    /// The function reference lives on its JS thread: release it there.
    fn drop(&mut self) {
        let id = self.id;
        self.link.send(Box::new(move |_env: &Env| {
            PROVIDERS.with(|p| p.borrow_mut().remove(&id));
        }));
    }
}

/// Calls the provider; a promise (any thenable) is followed, a plain value read at once.
fn call(env: &Env, id: u64, slot: &Answer) -> Result<(), String> {
    let result = PROVIDERS.with(|p| {
        let p = p.borrow();
        let f = p.get(&id).ok_or("the network was released")?;
        let f = f.borrow_back(env).map_err(|e| e.reason.clone())?;
        f.call(())
            .map_err(|e| format!("threw: {}", thrown_text(&e.reason)))
    })?;
    if result.get_type().map_err(|e| e.reason.clone())? == ValueType::Object {
        let obj = result.coerce_to_object().map_err(|e| e.reason.clone())?;
        let then: Option<Unknown> = obj.get("then").map_err(|e| e.reason.clone())?;
        if let Some(then) = then.filter(|t| t.get_type().ok() == Some(ValueType::Function)) {
            let then = unsafe { then.cast::<Function<FnArgs<(Unknown, Unknown)>, Unknown>>() }
                .map_err(|e| e.reason.clone())?;
            let ok_slot = slot.clone();
            let on_ok = env
                .create_function_from_closure::<Unknown, (), _>(
                    "perseusCredentialsOk",
                    move |ctx| {
                        let v: Unknown = ctx.get(0)?;
                        answer(&ok_slot, parse(v));
                        Ok(())
                    },
                )
                .map_err(|e| e.reason.clone())?;
            let err_slot = slot.clone();
            let on_err = env
                .create_function_from_closure::<Unknown, (), _>(
                    "perseusCredentialsFailed",
                    move |ctx| {
                        let v: Unknown = ctx.get(0)?;
                        answer(&err_slot, Err(format!("rejected: {}", reason_text(v))));
                        Ok(())
                    },
                )
                .map_err(|e| e.reason.clone())?;
            then.apply(obj, FnArgs::from((on_ok.to_unknown(), on_err.to_unknown())))
                .map_err(|e| format!("threw: {}", clip(&e.reason)))?;
            return Ok(());
        }
    }
    answer(slot, parse(result));
    Ok(())
}

/// A thrown error's text without the `Error: ` napi puts before the message.
fn thrown_text(reason: &str) -> String {
    clip(reason.strip_prefix("Error: ").unwrap_or(reason))
}

/// The message of a rejection reason (an Error's `message`, else its string form), clipped.
fn reason_text(v: Unknown) -> String {
    let text = (|| -> napi::Result<String> {
        if v.get_type()? == ValueType::Object {
            let o = v.coerce_to_object()?;
            if let Some(m) = o.get::<Unknown>("message")? {
                if m.get_type()? == ValueType::String {
                    return m.coerce_to_string()?.into_utf8()?.into_owned();
                }
            }
        }
        v.coerce_to_string()?.into_utf8()?.into_owned()
    })();
    clip(&text.unwrap_or_else(|_| "(no reason)".into()))
}

/// Checks the provider's value. Messages name the problem, never a value (it may be secret).
fn parse(v: Unknown) -> Result<Creds, String> {
    let bad = |what: &str| format!("returned {what}");
    let e = |e: napi::Error| e.reason;
    if v.get_type().map_err(e)? != ValueType::Object {
        return Err(bad(
            "something that is not an object (expected { username?, password, expiresAt? })",
        ));
    }
    let obj: Object = v.coerce_to_object().map_err(e)?;
    let field = |name: &str| -> Result<Option<Unknown>, String> {
        let v: Option<Unknown> = obj.get(name).map_err(e)?;
        Ok(v.filter(|v| !matches!(v.get_type(), Ok(ValueType::Undefined) | Ok(ValueType::Null))))
    };
    let string = |v: Unknown| -> Result<Option<String>, String> {
        if v.get_type().map_err(e)? != ValueType::String {
            return Ok(None);
        }
        Ok(Some(
            v.coerce_to_string()
                .and_then(|s| s.into_utf8())
                .and_then(|s| s.into_owned())
                .map_err(e)?,
        ))
    };
    let password = match field("password")? {
        Some(p) => string(p)?.filter(|p| !p.is_empty()),
        None => None,
    }
    .ok_or_else(|| bad("no password (password must be a non-empty string)"))?;
    let username = match field("username")? {
        None => None,
        Some(u) => Some(
            string(u)?
                .filter(|u| {
                    !u.is_empty() && !u.chars().any(|c| c.is_whitespace() || c.is_control())
                })
                .ok_or_else(|| {
                    bad("a bad username (a non-empty string without whitespace, when given)")
                })?,
        ),
    };
    let expires_at = match field("expiresAt")? {
        None => None,
        Some(x) => {
            let n = match x.get_type().map_err(e)? {
                ValueType::Number => x
                    .coerce_to_number()
                    .and_then(|n| n.get_double())
                    .map_err(e)?,
                // A Date: its epoch ms.
                ValueType::Object => x
                    .coerce_to_number()
                    .and_then(|n| n.get_double())
                    .map_err(e)?,
                _ => f64::NAN,
            };
            if !n.is_finite() || n < 0.0 {
                return Err(bad(
                    "a bad expiresAt (epoch milliseconds as a finite number, when given)",
                ));
            }
            Some(n as u64)
        }
    };
    Ok(Creds {
        username,
        password,
        expires_at,
    })
}
