//! `diagnostics_channel` TracingChannels (API.md, third round): which channels have a
//! subscriber, and publishing on the JS thread.
//!
//! The JS half is `diagnostics.js` (embedded, evaluated once per JS thread when the addon
//! loads, because the generated `index.js` is no place for hand-written code). It tells us,
//! through a closure, a bit mask of the channels that have a subscriber; the mask is an atomic
//! the runtime threads read ([`crate::core::trace::Tracer::traced`]), so with nobody
//! listening the core builds no trace and nothing crosses to the JS thread for it.
//!
//! What is published comes from events the core queues anyway (a finished heartbeat, sweep,
//! append, transition or credentials call, as [`crate::core::trace::Trace`]) and from
//! `queryActivity`, traced as the promise it returns.

use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use napi::bindgen_prelude::{
    FnArgs, Function, FunctionRef, JsObjectValue, JsValue, Object, ToNapiValue, Unknown,
};
use napi::Env;
use serde_json::{Map, Value};

use crate::core::error::Error as CoreError;
use crate::core::trace::{Trace, TraceKind};
use crate::node::errors::js_error_value;

/// The embedded JS half.
const SCRIPT: &str = include_str!("diagnostics.js");

type Publish = FunctionRef<FnArgs<(u32, Unknown<'static>, Unknown<'static>)>, Unknown<'static>>;
type TraceQuery = FunctionRef<FnArgs<(Unknown<'static>, Unknown<'static>)>, Unknown<'static>>;

/// One JS thread's channels. The function references are never dropped: they live as long as
/// the thread's environment, and a drop after its teardown would touch a freed environment.
struct Diag {
    mask: Arc<AtomicU32>,
    publish: ManuallyDrop<Publish>,
    trace_query: ManuallyDrop<TraceQuery>,
}

thread_local! {
    static DIAG: RefCell<Option<Diag>> = const { RefCell::new(None) };
}

/// The bit of `kind` in the mask (the order of `KINDS` in diagnostics.js).
pub fn bit(kind: TraceKind) -> u32 {
    1 << kind as u32
}

/// Evaluates the JS half, adds `diagnosticsChannels` to the exports and keeps what the addon
/// calls. Called from the module's init, once per JS thread.
pub fn install(env: &Env, exports: &mut Object) -> napi::Result<()> {
    let factory: Function<FnArgs<(Object, Unknown)>, Object> = env.run_script(SCRIPT)?;
    let mask = Arc::new(AtomicU32::new(0));
    let for_js = mask.clone();
    let set_mask =
        env.create_function_from_closure::<u32, (), _>("perseusSetTraceMask", move |ctx| {
            let bits: u32 = ctx.get(0)?;
            for_js.store(bits, Ordering::Release);
            Ok(())
        })?;
    let api = factory.call(FnArgs::from((*exports, set_mask.to_unknown())))?;
    let publish: Publish = api.get_named_property("publish")?;
    let trace_query: TraceQuery = api.get_named_property("traceQuery")?;
    DIAG.with(|d| {
        *d.borrow_mut() = Some(Diag {
            mask,
            publish: ManuallyDrop::new(publish),
            trace_query: ManuallyDrop::new(trace_query),
        })
    });
    Ok(())
}

/// This JS thread's mask, for the sinks of its networks (read on runtime threads).
pub fn mask() -> Arc<AtomicU32> {
    DIAG.with(|d| d.borrow().as_ref().map(|d| d.mask.clone()))
        .unwrap_or_default()
}

/// Whether `kind` has a subscriber now. JS thread only.
pub fn traced(kind: TraceKind) -> bool {
    DIAG.with(|d| {
        d.borrow()
            .as_ref()
            .is_some_and(|d| d.mask.load(Ordering::Acquire) & bit(kind) != 0)
    })
}

/// Publishes one finished operation of the core on its channel. JS thread only; a subscriber
/// that throws is Node's business (diagnostics_channel reports it as an uncaught exception on
/// a later tick), never ours.
pub fn publish(
    env: &Env,
    instance_id: &str,
    default_server: Option<&str>,
    trace: Trace,
) -> napi::Result<()> {
    if !traced(trace.kind) {
        return Ok(()); // unsubscribed since the core built it
    }
    let mut m: Map<String, Value> = Map::new();
    m.insert("instanceId".into(), instance_id.into());
    for (k, v) in trace.fields {
        m.insert(k, as_doubles(v));
    }
    if let Some(server) = trace.server.as_deref().or(default_server) {
        m.insert("server".into(), server.into());
    }
    m.insert("startTime".into(), (trace.started_at_ms as f64).into());
    m.insert(
        "durationMs".into(),
        serde_json::Number::from_f64(trace.duration_ms)
            .map(Value::Number)
            .unwrap_or(Value::Null),
    );
    call_publish(env, trace.kind, &Value::Object(m), trace.error.as_ref())
}

fn call_publish(
    env: &Env,
    kind: TraceKind,
    message: &Value,
    error: Option<&CoreError>,
) -> napi::Result<()> {
    let msg: Unknown = env.to_js_value(message)?;
    let err: Unknown = match error {
        Some(e) => js_error_value(env, e)?,
        None => ().into_unknown(env)?,
    };
    DIAG.with(|d| {
        let d = d.borrow();
        let Some(d) = d.as_ref() else { return Ok(()) };
        let f = d.publish.borrow_back(env)?;
        f.call(FnArgs::from((kind as u32, msg, err)))?;
        Ok(())
    })
}

/// `queryActivity`'s promise, traced when `perseus:activity:query` has a subscriber: returns
/// the promise the caller gets (the same outcome; `count` set before `asyncStart`).
pub fn trace_query<'e>(
    env: &'e Env,
    instance_id: &str,
    server: Option<&str>,
    query: Option<Unknown<'e>>,
    promise: Object<'e>,
) -> napi::Result<Object<'e>> {
    if !traced(TraceKind::Query) {
        return Ok(promise);
    }
    let mut msg = Object::new(env)?;
    msg.set("instanceId", instance_id)?;
    match query {
        Some(q) => msg.set("query", q)?,
        None => msg.set("query", Object::new(env)?)?,
    }
    msg.set("count", 0)?;
    if let Some(s) = server {
        msg.set("server", s)?;
    }
    msg.set("startTime", crate::core::clock::now_ms() as f64)?;
    DIAG.with(|d| {
        let d = d.borrow();
        let Some(d) = d.as_ref() else {
            return Ok(promise);
        };
        let f = d.trace_query.borrow_back(env)?;
        let traced = f.call(FnArgs::from((msg.to_unknown(), promise.to_unknown())))?;
        traced.coerce_to_object()
    })
}

/// Every number as a double: JS messages carry `number`s (the conversion would make a large
/// `u64` — an epoch ms — a `BigInt`).
fn as_doubles(v: Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Value::Array(a) => Value::Array(a.into_iter().map(as_doubles).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, as_doubles(v))).collect()),
        other => other,
    }
}

/// `host:port` of a standalone target (the node every command goes to); `None` for a cluster,
/// where the core names the node itself when it knows it.
pub fn standalone_server(target: &crate::core::config::Target) -> Option<String> {
    let crate::core::config::Target::Standalone(url) = target else {
        return None;
    };
    let u = url::Url::parse(url).ok()?;
    let host = u.host_str()?;
    Some(format!("{}:{}", host, u.port().unwrap_or(6379)))
}
