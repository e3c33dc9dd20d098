//! Gathers the `logActivity()` calls of one JS tick into one pipeline.
//!
//! Each call reads its input at once (the core validates it in the batch: a bad one fails
//! alone and is not sent), gets its own promise, and joins a per-JS-thread queue. The first call of a tick schedules a flush through
//! the JS thread's job queue ([`runtime::Link`], a threadsafe function): it runs once the
//! current macrotask and its microtasks are done, the same boundary as ioredis'
//! auto-pipelining. The flush hands each network's calls to the runtime as one task, which
//! sends them as one pipeline of XADDs, and settles all their promises in one job, each with
//! its own stream ID or error, in call order.
//!
//! Why in Rust and not a JS wrapper: `index.js` is generated, and a hand-written JS layer
//! would need its own class over the native one; the per-call cost that matters (a runtime
//! task, a cross-thread wake and a Redis round trip per call) is paid here once per tick.

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use napi::Env;

use crate::core::activity::ActivityInput;
use crate::core::error::Error as CoreError;
use crate::core::network::Network;
use crate::node::errors::js_error;
use crate::node::runtime::{js_thread_link, panic_error, runtime, Job, Link, Pending};

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

/// Runs on the JS thread after the tick: one runtime task per network with waiting calls.
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
        let link: Arc<Link> = link.clone();
        rt.spawn(async move {
            let n = inputs.len();
            let outcome = AssertUnwindSafe(net.log_activity_batch(inputs))
                .catch_unwind()
                .await;
            let results: Vec<Result<String, CoreError>> = match outcome {
                Ok(r) => r,
                Err(panic) => (0..n).map(|_| Err(panic_error(&panic))).collect(),
            };
            let settle: Job = Box::new(move |env: &Env| {
                for (p, r) in promises.into_iter().zip(results) {
                    p.settle(env, r.map_err(|e| js_error(env, &e)));
                }
            });
            link.send(settle);
        });
    }
}
