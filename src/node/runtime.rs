//! The one place that owns the addon's tokio runtime and turns core futures into promises.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;

use futures_util::FutureExt;
use napi::bindgen_prelude::{Object, ToNapiValue};
use napi::Env;

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

type Resolver<D> = Box<dyn FnOnce(Env) -> napi::Result<D> + Send>;

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
    let (deferred, promise) = env.create_deferred::<D, Resolver<D>>()?;
    rt.spawn(async move {
        let outcome = AssertUnwindSafe(fut).catch_unwind().await;
        deferred.resolve(Box::new(move |env: Env| match outcome {
            Ok(Ok(v)) => map(&env, v),
            Ok(Err(e)) => Err(js_error(&env, &e)),
            Err(panic) => Err(js_error(
                &env,
                &CoreError::Redis(format!("internal error (a bug): {}", panic_text(&panic))),
            )),
        }));
    });
    Ok(promise)
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
