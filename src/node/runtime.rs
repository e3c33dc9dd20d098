//! The one place that owns the addon's tokio runtime and turns core futures into promises.
//!
//! Everything that must run on a JS thread — settling promises, delivering events and log
//! records — goes through one queue per JS thread (main thread or worker): a raw threadsafe
//! function. One queue keeps order (an event emitted before a call completes is heard before
//! its promise settles) and lets wake-ups coalesce under load. The function is referenced only
//! while promises are pending or a started network holds the process, so a pending call or a
//! running instance keeps Node alive and an idle addon never does.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use futures_util::FutureExt;
use napi::bindgen_prelude::{JsValue, Object, ToNapiValue};
use napi::{sys, Env};

use crate::core::error::Error as CoreError;
use crate::node::errors::js_error;

static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();

/// The process-wide runtime: two named worker threads, made on first use. Its threads are not
/// libuv handles, so they never keep Node alive.
pub fn runtime() -> napi::Result<&'static tokio::runtime::Runtime> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("perseus-rt")
                .enable_all()
                .build()
                .map_err(|e| format!("could not start the perseus runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| napi::Error::from_reason(e.clone()))
}

/// Work to run on the JS thread.
pub type Job = Box<dyn FnOnce(&Env) + Send>;

/// The JS thread's queue: a raw threadsafe function whose callback runs each queued [`Job`]
/// directly (no JS function call per job), and what keeps it referenced.
struct Settler {
    link: Arc<Link>,
    /// Promises not yet settled.
    pending: Cell<usize>,
    /// Started networks holding the process.
    holds: Cell<usize>,
    referenced: Cell<bool>,
}

/// What runtime threads hold: the function, and whether Node has finalized it (at env
/// teardown, e.g. a terminated worker), after which it must not be called.
pub struct Link {
    tsfn: AtomicPtr<sys::napi_threadsafe_function__>,
    alive: RwLock<bool>,
}

// SAFETY: a threadsafe function may be called from any thread; `alive` guards its lifetime.
unsafe impl Send for Link {}
unsafe impl Sync for Link {}

impl Link {
    /// Queues `job` for the JS thread; dropped unrun when the thread's environment is gone.
    pub fn send(&self, job: Job) {
        let alive = self.alive.read().unwrap_or_else(|p| p.into_inner());
        if !*alive {
            return;
        }
        let data = Box::into_raw(Box::new(job));
        // SAFETY: the function is alive (checked under the lock finalization takes).
        let status = unsafe {
            sys::napi_call_threadsafe_function(
                self.tsfn.load(Ordering::Acquire),
                data.cast(),
                sys::ThreadsafeFunctionCallMode::nonblocking,
            )
        };
        if status != sys::Status::napi_ok {
            // SAFETY: not queued, so still ours.
            drop(unsafe { Box::from_raw(data) });
        }
    }
}

thread_local! {
    static SETTLER: RefCell<Option<Rc<Settler>>> = const { RefCell::new(None) };
}

unsafe extern "C" fn run_job(
    env: sys::napi_env,
    _js_callback: sys::napi_value,
    _context: *mut std::ffi::c_void,
    data: *mut std::ffi::c_void,
) {
    // SAFETY: `data` is a `Box<Job>` queued by `Link::send`.
    let job = unsafe { Box::from_raw(data.cast::<Job>()) };
    if env.is_null() {
        return; // torn down: drop without running
    }
    let env = Env::from_raw(env);
    // A bug here must not unwind into Node (an extern "C" frame).
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (job)(&env)));
}

unsafe extern "C" fn finalized(
    _env: sys::napi_env,
    data: *mut std::ffi::c_void,
    _hint: *mut std::ffi::c_void,
) {
    // SAFETY: `data` is the `Arc<Link>` leaked in `settler`.
    let link = unsafe { Arc::from_raw(data.cast::<Link>()) };
    *link.alive.write().unwrap_or_else(|p| p.into_inner()) = false;
}

fn settler(env: &Env) -> napi::Result<Rc<Settler>> {
    if let Some(s) = SETTLER.with(|s| s.borrow().clone()) {
        return Ok(s);
    }
    let name = env.create_string("perseusSettle")?;
    let mut tsfn = std::ptr::null_mut();
    // The link's address is needed by the finalizer before the function exists: allocate
    // it first, fill in the pointer after creation.
    let link = Arc::new(Link {
        tsfn: AtomicPtr::new(std::ptr::null_mut()),
        alive: RwLock::new(true),
    });
    let for_finalizer = Arc::into_raw(link.clone());
    // SAFETY: valid env and out-pointer; no JS function (the callback settles directly).
    let status = unsafe {
        sys::napi_create_threadsafe_function(
            env.raw(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            name.raw(),
            0,
            1,
            for_finalizer as *mut std::ffi::c_void,
            Some(finalized),
            std::ptr::null_mut(),
            Some(run_job),
            &mut tsfn,
        )
    };
    if status != sys::Status::napi_ok {
        // SAFETY: the finalizer will never run; take the reference back.
        drop(unsafe { Arc::from_raw(for_finalizer) });
        return Err(napi::Error::from_reason(
            "could not create the promise settler",
        ));
    }
    link.tsfn.store(tsfn, Ordering::Release);
    // SAFETY: on the JS thread; an idle settler must not hold the event loop.
    unsafe { sys::napi_unref_threadsafe_function(env.raw(), tsfn) };
    let s = Rc::new(Settler {
        link,
        pending: Cell::new(0),
        holds: Cell::new(0),
        referenced: Cell::new(false),
    });
    SETTLER.with(|slot| *slot.borrow_mut() = Some(s.clone()));
    Ok(s)
}

/// The JS thread's queue, for senders that are not promises (events, logs).
pub fn js_thread_link(env: &Env) -> napi::Result<Arc<Link>> {
    Ok(settler(env)?.link.clone())
}

/// References the function while anything needs the event loop, unreferences it otherwise.
fn update_ref(env: &Env, s: &Settler) {
    let want = s.pending.get() + s.holds.get() > 0;
    if want != s.referenced.get() {
        let tsfn = s.link.tsfn.load(Ordering::Acquire);
        // SAFETY: on the JS thread that owns the function.
        unsafe {
            if want {
                sys::napi_ref_threadsafe_function(env.raw(), tsfn);
            } else {
                sys::napi_unref_threadsafe_function(env.raw(), tsfn);
            }
        }
        s.referenced.set(want);
    }
}

/// A started network holds (`true`) or releases (`false`) the process. Callers pair them.
pub fn hold_process(env: &Env, on: bool) {
    if let Ok(s) = settler(env) {
        let n = s.holds.get();
        s.holds.set(if on { n + 1 } else { n.saturating_sub(1) });
        update_ref(env, &s);
    }
}

/// Holds the process for work whose promises JS made itself (a handed-over tick of
/// `logActivity` calls, see `batch`), as a [`Pending`] does for one; pair with
/// [`release_pending`] once its last result is delivered.
pub fn hold_pending(env: &Env) -> napi::Result<()> {
    let s = settler(env)?;
    hold_one(env, &s);
    Ok(())
}

/// Ends one [`hold_pending`].
pub fn release_pending(env: &Env) {
    release_one(env);
}

fn hold_one(env: &Env, s: &Settler) {
    s.pending.set(s.pending.get() + 1);
    update_ref(env, s);
}

fn release_one(env: &Env) {
    SETTLER.with(|slot| {
        if let Some(s) = slot.borrow().as_ref() {
            s.pending.set(s.pending.get().saturating_sub(1));
            update_ref(env, s);
        }
    });
}

/// A promise made on the JS thread and settled there later, possibly in one job with others
/// (the activity batcher settles a whole tick's `logActivity` calls at once). It holds the
/// process until settled.
pub struct Pending(sys::napi_deferred);
// SAFETY: the pointer is only dereferenced (settled) on the JS thread, by a queued job.
unsafe impl Send for Pending {}

impl Pending {
    /// Creates the promise (returned to JS) and its settler handle.
    pub fn new(env: &Env) -> napi::Result<(Object<'_>, Pending)> {
        let settler = settler(env)?;
        let mut raw_deferred = std::ptr::null_mut();
        let mut raw_promise = std::ptr::null_mut();
        // SAFETY: plain napi call on the JS thread with valid out-pointers.
        let status =
            unsafe { sys::napi_create_promise(env.raw(), &mut raw_deferred, &mut raw_promise) };
        if status != sys::Status::napi_ok {
            return Err(napi::Error::from_reason("could not create a promise"));
        }
        hold_one(env, &settler);
        Ok((
            Object::from_raw(env.raw(), raw_promise),
            Pending(raw_deferred),
        ))
    }

    /// Settles on the JS thread (only there: call it from a queued [`Job`]). A panic while
    /// converting the value rejects the promise with the coded internal error, so a bug in a
    /// conversion never leaves a promise pending (and the process held) forever.
    pub fn settle<D: ToNapiValue>(self, env: &Env, result: napi::Result<D>) {
        // SAFETY (inside): `to_napi_value` is called on the JS thread with its env.
        let converted = std::panic::catch_unwind(AssertUnwindSafe(|| {
            result.and_then(|d| unsafe { D::to_napi_value(env.raw(), d) })
        }))
        .unwrap_or_else(|panic| Err(js_error(env, &panic_error(&panic))));
        // SAFETY: on the JS thread that created the deferred; `self` is consumed, so once.
        unsafe {
            match converted {
                Ok(value) => sys::napi_resolve_deferred(env.raw(), self.0, value),
                Err(e) => {
                    let reason =
                        ToNapiValue::to_napi_value(env.raw(), e).unwrap_or(std::ptr::null_mut());
                    sys::napi_reject_deferred(env.raw(), self.0, reason)
                }
            };
        }
        release_one(env);
    }
}

/// Runs `fut` on the runtime and returns a promise settled on the JS thread: `map` converts
/// the value there, an error becomes a coded JS error, and a panic becomes a rejection.
pub fn promise<'env, T, D, F, M>(env: &'env Env, fut: F, map: M) -> napi::Result<Object<'env>>
where
    T: Send + 'static,
    D: ToNapiValue + 'static,
    F: Future<Output = Result<T, CoreError>> + Send + 'static,
    M: FnOnce(&Env, T) -> napi::Result<D> + Send + 'static,
{
    let rt = runtime()?;
    let link = settler(env)?.link.clone();
    let (object, pending) = Pending::new(env)?;
    rt.spawn(async move {
        let outcome = AssertUnwindSafe(fut).catch_unwind().await;
        let settle: Job = Box::new(move |env: &Env| {
            let result = match outcome {
                // A panic in the mapping settles the promise too (issue 23 item 6).
                Ok(Ok(v)) => std::panic::catch_unwind(AssertUnwindSafe(|| {
                    test_panic_in_map();
                    map(env, v)
                }))
                .unwrap_or_else(|panic| Err(js_error(env, &panic_error(&panic)))),
                Ok(Err(e)) => Err(js_error(env, &e)),
                Err(panic) => Err(js_error(env, &panic_error(&panic))),
            };
            pending.settle(env, result);
        });
        link.send(settle);
    });
    Ok(object)
}

/// Test-only trigger for the settle-on-panic path: with `PERSEUS_TEST_PANIC_IN_MAP=1` in the
/// environment at the first call, every promise's result mapping panics. Nothing in the
/// package sets it; a production process never has it (the name says what it does). Read once.
fn test_panic_in_map() {
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var("PERSEUS_TEST_PANIC_IN_MAP").is_ok_and(|v| v == "1")) {
        panic!("PERSEUS_TEST_PANIC_IN_MAP: a panic in a result mapping (test trigger)");
    }
}

/// The rejection a caught panic becomes: `ERR_PERSEUS_REDIS` ("internal error (a bug): …"),
/// the one code the contract has for a failure that is not the caller's (API.md has no
/// internal code; a new one would change the contract).
pub fn panic_error(p: &Box<dyn std::any::Any + Send>) -> CoreError {
    CoreError::Redis(format!("internal error (a bug): {}", panic_text(p)))
}

/// A rejected promise for an argument error found before any work started.
pub fn rejected<'env>(env: &'env Env, e: CoreError) -> napi::Result<Object<'env>> {
    promise(env, async move { Err::<(), _>(e) }, |_, ()| Ok(()))
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}
