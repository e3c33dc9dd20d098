//! Gathers the `logActivity()` calls of one JS tick and hands them to the network's ordered
//! writer.
//!
//! The usual way in is the JS front, `batch.js` (evaluated by [`install`] when the addon
//! loads): it checks each input's shape, makes each call's promise in JS and queues the call
//! there; once per tick (process.nextTick) it hands each network's queue over in ONE call of
//! [`submit`], as one JSON text, and each piece of results comes back in ONE call of its
//! `settle` (IDs joined by '\n', the failures' errors apart). Why in JS (issue 21): the
//! native per-call path paid a napi call, a napi property read per field, a napi promise and a
//! napi settle per call, the largest share of the JS thread's time.
//!
//! The native per-call path below stays for what the front does not take: an input not of the
//! plain shape (so it rejects with exactly the error it always had) and a flush `submit`
//! refuses. Each such call reads its input at once (the core validates it in the batch: a bad
//! one fails alone and is not sent), gets its own promise, and joins a per-JS-thread queue.
//! The first call of a tick schedules a flush through the JS thread's job queue
//! ([`runtime::Link`], a threadsafe function).
//!
//! Either way a flush queues each network's calls on that network's one ordered writer
//! (`core::ordered`): batches are sent in flush order, at most ~4,096 entries per pipeline, so
//! stream IDs increase in call order across ticks, and a tick of a million calls is sent and
//! settled in bounded pieces, each call with its own stream ID or error, in call order. Every
//! other method hands the queued calls over first (the JS front for its queue, [`flush_now`]
//! for the native one), so work keeps call order across methods.

use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{
    FnArgs, Function, FunctionRef, JsObjectValue, JsValue, Object, ToNapiValue, Unknown,
};
use napi::Env;

use crate::core::activity::ActivityInput;
use crate::core::activity::Sink;
use crate::core::error::Result as CoreResult;
use crate::core::network::Network;
use crate::node::convert::parse_state;
use crate::node::errors::{js_error, js_error_value};
use crate::node::runtime::{hold_pending, js_thread_link, release_pending, runtime, Link, Pending};

/// The embedded JS front.
const SCRIPT: &str = include_str!("batch.js");

type Settle = FunctionRef<FnArgs<(u32, String, Unknown<'static>)>, Unknown<'static>>;

thread_local! {
    /// The front's `settle` on this JS thread. Never dropped: it lives as long as the thread's
    /// environment, and a drop after its teardown would touch a freed environment.
    static SETTLE: RefCell<Option<ManuallyDrop<Settle>>> = const { RefCell::new(None) };
}

/// Evaluates the JS front over the `PerseusNetwork` class on `exports`. Called from the
/// module's init (after the classes are registered), once per JS thread.
pub fn install(env: &Env, exports: &Object) -> napi::Result<()> {
    let factory: Function<Unknown, Object> = env.run_script(SCRIPT)?;
    let class: Unknown = exports.get_named_property("PerseusNetwork")?;
    let api = factory.call(class)?;
    let settle: Settle = api.get_named_property("settle")?;
    SETTLE.with(|s| *s.borrow_mut() = Some(ManuallyDrop::new(settle)));
    Ok(())
}

/// One input as the front encodes it: event, reason, fromState, toState, idempotencyKey, and
/// the fields as [name, value, ...] (the front checked every type; states are checked here).
type Row = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Vec<String>>,
);

/// The core input of one row (the fields' flat list paired up; a state named as the native
/// reader names it, so an error reads the same).
fn input_of(row: Row) -> crate::core::error::Result<ActivityInput> {
    let (event, reason, from, to, key, pairs) = row;
    let mut fields = Vec::new();
    let mut it = pairs.unwrap_or_default().into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        fields.push((k, v));
    }
    Ok(ActivityInput {
        event,
        reason,
        from_state: from
            .map(|s| parse_state("input.fromState", &s))
            .transpose()?,
        to_state: to.map(|s| parse_state("input.toState", &s)).transpose()?,
        fields,
        idempotency_key: key,
    })
}

/// Queues one tick's calls of `net`, handed over by the front, behind everything queued
/// before. `false` when it takes none of them (the front then sends each the per-call way):
/// a closed network, no runtime, or a text that does not parse as rows (JSON cannot carry a
/// lone surrogate the native reader would replace) — never after queueing any.
pub fn submit(env: &Env, net: &Network, json: &str, token: u32) -> bool {
    flush_now(env); // calls the native path queued before these go first
    if net.ensure_open().is_err() {
        return false;
    }
    let Ok(rows) = serde_json::from_str::<Vec<Row>>(json) else {
        return false;
    };
    let Ok(inputs) = rows
        .into_iter()
        .map(input_of)
        .collect::<Result<Vec<_>, _>>()
    else {
        return false;
    };
    let (Ok(rt), Ok(link)) = (runtime(), js_thread_link(env)) else {
        return false;
    };
    if inputs.is_empty() || hold_pending(env).is_err() {
        return false;
    }
    let sink = Arc::new(Handed {
        link,
        token,
        left: AtomicUsize::new(inputs.len()),
    });
    if let Some(writer) = net.submit_activity(inputs, sink) {
        rt.spawn(writer);
    }
    true
}

/// Settles a handed-over tick piece by piece through the front's `settle`, and holds the
/// process until its last result is delivered.
struct Handed {
    link: Arc<Link>,
    token: u32,
    left: AtomicUsize,
}

impl Sink for Handed {
    fn deliver(&self, results: Vec<CoreResult<String>>) {
        let last = self.left.fetch_sub(results.len(), Ordering::AcqRel) == results.len();
        let token = self.token;
        self.link.send(Box::new(move |env: &Env| {
            settle_piece(env, token, results);
            if last {
                release_pending(env);
            }
        }));
    }
}

/// One call of the front's `settle`: the IDs joined by '\n' ('' for a failure) and the
/// failures' errors in order (undefined when none).
fn settle_piece(env: &Env, token: u32, results: Vec<CoreResult<String>>) {
    let mut ids = String::with_capacity(results.len() * 20);
    let mut errors = Vec::new();
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            ids.push('\n');
        }
        match r {
            Ok(id) => ids.push_str(id),
            Err(e) => errors.push(e),
        }
    }
    let call = || -> napi::Result<()> {
        let errs: Unknown = if errors.is_empty() {
            ().into_unknown(env)?
        } else {
            let mut arr = env.create_array(errors.len() as u32)?;
            for (i, e) in errors.iter().enumerate() {
                arr.set(i as u32, js_error_value(env, e)?)?;
            }
            arr.to_unknown()
        };
        SETTLE.with(|s| {
            let s = s.borrow();
            let Some(f) = s.as_ref() else { return Ok(()) };
            f.borrow_back(env)?
                .call(FnArgs::from((token, ids, errs)))
                .map(|_| ())
        })
    };
    if let Err(e) = call() {
        tracing::warn!("logActivity results could not be settled: {e}");
    }
}

/// One network's calls waiting for the flush, in call order.
struct Calls {
    net: Network,
    inputs: Vec<ActivityInput>,
    promises: Vec<Pending>,
}

thread_local! {
    /// This JS thread's waiting calls, per network (usually one).
    static QUEUE: RefCell<Vec<Calls>> = const { RefCell::new(Vec::new()) };
}

/// Queues one validated call and returns its promise.
pub fn log_activity<'e>(
    env: &'e Env,
    net: &Network,
    input: ActivityInput,
) -> napi::Result<napi::bindgen_prelude::Object<'e>> {
    let link = js_thread_link(env)?;
    let (promise, pending) = Pending::new(env)?;
    let first = QUEUE.with(|q| {
        let mut q = q.borrow_mut();
        let first = q.is_empty();
        match q.iter_mut().find(|c| c.net.same_as(net)) {
            Some(c) => {
                c.inputs.push(input);
                c.promises.push(pending);
            }
            None => q.push(Calls {
                net: net.clone(),
                inputs: vec![input],
                promises: vec![pending],
            }),
        }
        first
    });
    if first {
        link.send(Box::new(flush));
    }
    Ok(promise)
}

/// Hands the waiting calls over now. Every other method of a network calls this first, so
/// work keeps call order across methods (`logActivity(x)` then `drain()` in one tick writes x
/// before DEREGISTERED, as when each call was its own task).
pub fn flush_now(env: &Env) {
    if QUEUE.with(|q| !q.borrow().is_empty()) {
        flush(env);
    }
}

/// Settles one flush's promises, piece by piece, as the writer delivers results.
struct Promises {
    link: Arc<Link>,
    pending: Mutex<std::vec::IntoIter<Pending>>,
}

impl Sink for Promises {
    fn deliver(&self, results: Vec<CoreResult<String>>) {
        let mine: Vec<Pending> = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.by_ref().take(results.len()).collect()
        };
        self.link.send(Box::new(move |env: &Env| {
            for (p, r) in mine.into_iter().zip(results) {
                p.settle(env, r.map_err(|e| js_error(env, &e)));
            }
        }));
    }
}

/// Runs on the JS thread after the tick: queues each network's calls on its ordered writer,
/// and starts that writer on the runtime when it is not running.
fn flush(env: &Env) {
    let batches = QUEUE.with(|q| std::mem::take(&mut *q.borrow_mut()));
    let (Ok(rt), Ok(link)) = (runtime(), js_thread_link(env)) else {
        for c in batches {
            for p in c.promises {
                p.settle::<String>(
                    env,
                    Err(napi::Error::from_reason("perseus runtime is gone")),
                );
            }
        }
        return;
    };
    for Calls {
        net,
        inputs,
        promises,
    } in batches
    {
        let sink = Arc::new(Promises {
            link: link.clone(),
            pending: Mutex::new(promises.into_iter()),
        });
        if let Some(writer) = net.submit_activity(inputs, sink) {
            rt.spawn(writer);
        }
    }
}
