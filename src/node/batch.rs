//! Gathers the `logActivity()` calls of one JS tick and hands them to the network's ordered
//! writer.
//!
//! Each call reads its input at once (the core validates it in the batch: a bad one fails
//! alone and is not sent), gets its own promise, and joins a per-JS-thread queue. The first call of a tick schedules a flush through
//! the JS thread's job queue ([`runtime::Link`], a threadsafe function): it runs once the
//! current macrotask and its microtasks are done, the same boundary as ioredis'
//! auto-pipelining. The flush queues each network's calls on that network's one ordered writer
//! (`core::ordered`): batches are sent in flush order, at most ~4,096 entries per pipeline, so
//! stream IDs increase in call order across ticks, and a tick of a million calls is sent and
//! settled in bounded pieces. Each piece's promises are settled in one job on the JS thread,
//! each with its own stream ID or error, in call order.
//!
//! Why in Rust and not a JS wrapper: `index.js` is generated, and a hand-written JS layer
//! would need its own class over the native one; the per-call cost that matters (a runtime
//! task, a cross-thread wake and a Redis round trip per call) is paid here once per tick.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use napi::Env;

use crate::core::activity::ActivityInput;
use crate::core::activity::Sink;
use crate::core::error::Result as CoreResult;
use crate::core::network::Network;
use crate::node::errors::js_error;
use crate::node::runtime::{js_thread_link, runtime, Link, Pending};

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
