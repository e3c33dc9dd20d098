//! `PerseusNetwork`: the JS class over [`crate::core::network::Network`].

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use napi::bindgen_prelude::{Function, JsValue, Object, This, Unknown};
use napi::Env;
use napi_derive::napi;

use crate::core::activity::make_query;
use crate::core::config::Config;
use crate::core::error::Error as CoreError;
use crate::core::network::Network;
use crate::core::redact::clip;
use crate::node::convert::{read_activity_input, read_options, Json, JsonText, Reader};
use crate::node::errors::js_error;
use crate::node::events::{tail_topic, Listeners, NodeSink, EVENT_NAMES};
use crate::node::runtime::{promise, rejected, runtime};

/// A member of the Perseus network. See index.d.ts / API.md for the contract.
#[napi]
pub struct PerseusNetwork {
    net: Network,
    sink: Arc<NodeSink>,
    listeners: Rc<RefCell<Listeners>>,
}

#[napi]
impl PerseusNetwork {
    /// Validates synchronously (TypeError with code ERR_PERSEUS_INVALID_OPTION); does no I/O.
    #[napi(catch_unwind, constructor, ts_args_type = "options: PerseusOptions")]
    pub fn new(env: Env, options: Option<Unknown>) -> napi::Result<Self> {
        let fail = |e: CoreError| js_error(&env, &e);
        let reader = Reader::new(options, "options", "")
            .map_err(fail)?
            .ok_or_else(|| {
                fail(CoreError::invalid(
                    "options must be an object with exchangeId and exchangeName",
                ))
            })?;
        let mut raw = read_options(&reader).map_err(fail)?;
        raw.pid = Some(std::process::id());
        let logger = match reader.raw("logger").map_err(fail)? {
            None => None,
            Some(v) if v.get_type()? == napi::ValueType::Object => {
                Some(v.coerce_to_object()?.create_ref::<false>()?)
            }
            Some(_) => {
                return Err(fail(CoreError::invalid(
                    "logger must be a pino-compatible object",
                )))
            }
        };
        let provider = crate::node::credentials::read(&env, &reader).map_err(fail)?;
        let refresh = crate::core::config::ms_opt(
            "credentialsRefreshMs",
            reader.number("credentialsRefreshMs").map_err(fail)?,
            0.0,
        )
        .map_err(fail)?
        .filter(|d| !d.is_zero());
        let mut cfg = Config::from_options(raw, std::env::var("REDIS_URL").ok()).map_err(fail)?;
        if let Some(p) = provider {
            cfg.connection.credentials = Some(crate::core::credentials::Credentials::new(
                Arc::new(p),
                refresh,
            ));
        }
        let has_logger = logger.is_some();
        let listeners = Rc::new(RefCell::new(Listeners::default()));
        let watchdog = Arc::new(crate::core::watchdog::Watchdog::default());
        let sink = NodeSink::new(
            &env,
            &cfg.identity.instance_id,
            cfg.log_level,
            listeners.clone(),
            logger,
            watchdog.clone(),
            crate::node::diag::standalone_server(&cfg.connection.target),
        )?;
        let log_sink: Option<Arc<dyn crate::core::logging::LogSink>> =
            if has_logger { Some(sink.clone()) } else { None };
        let net = Network::with_watchdog(cfg, sink.clone(), log_sink, watchdog);
        Ok(PerseusNetwork {
            net,
            sink,
            listeners,
        })
    }

    #[napi(catch_unwind, getter)]
    pub fn instance_id(&self) -> String {
        self.net.instance_id().to_string()
    }

    #[napi(catch_unwind, getter, ts_return_type = "InstanceState")]
    pub fn state(&self) -> &'static str {
        self.net.state().as_str()
    }

    /// idle → registering → running.
    #[napi(catch_unwind, ts_return_type = "Promise<InstanceInfo>")]
    pub fn start<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        crate::node::batch::flush_now(env);
        // Hold the process only for a start that can happen; a refused one must not leak a hold.
        let legal =
            crate::core::fsm::next_state(self.net.state(), crate::core::fsm::Event::Register);
        if !self.net.is_closed() && legal.is_some() {
            self.sink.hold(env, true);
        }
        let net = self.net.clone();
        promise(env, async move { net.start().await }, |_, v| Ok(Json(v)))
    }

    /// running → draining → dead. Idempotent.
    #[napi(
        catch_unwind,
        ts_args_type = "reason?: string",
        ts_return_type = "Promise<void>"
    )]
    pub fn drain<'e>(&self, env: &'e Env, reason: Option<Unknown>) -> napi::Result<Object<'e>> {
        crate::node::batch::flush_now(env);
        let reason = match optional_reason(reason) {
            Ok(r) => r,
            Err(e) => return rejected(env, e),
        };
        let net = self.net.clone();
        promise(env, async move { net.drain(reason).await }, |_, ()| Ok(()))
    }

    /// registering|running → dead (ERROR).
    #[napi(
        catch_unwind,
        ts_args_type = "reason: string",
        ts_return_type = "Promise<void>"
    )]
    pub fn fail<'e>(&self, env: &'e Env, reason: Option<Unknown>) -> napi::Result<Object<'e>> {
        crate::node::batch::flush_now(env);
        let reason = match optional_reason(reason).and_then(|r| {
            r.ok_or_else(|| {
                CoreError::invalid("reason is required (a string of at most 1024 characters)")
            })
        }) {
            Ok(r) => r,
            Err(e) => return rejected(env, e),
        };
        let net = self.net.clone();
        promise(env, async move { net.fail(reason).await }, |_, ()| Ok(()))
    }

    /// Drains when running, then releases everything. Idempotent.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn close<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        crate::node::batch::flush_now(env);
        let net = self.net.clone();
        promise(env, async move { net.close().await }, |_, ()| Ok(()))
    }

    /// Adds a listener.
    #[napi(
        catch_unwind,
        ts_generic_types = "K extends keyof PerseusEvents",
        ts_args_type = "event: K, listener: (payload: PerseusEvents[K]) => void",
        ts_return_type = "this"
    )]
    pub fn on<'e>(
        &self,
        env: &'e Env,
        this: This<'e>,
        event: Unknown,
        listener: Unknown,
    ) -> napi::Result<This<'e>> {
        let (name, f) = self.event_args(env, event, listener)?;
        self.listeners.borrow_mut().add(name, f.create_ref()?);
        if tail_topic(name).is_some() && !self.net.is_closed() {
            let _guard = runtime()?.enter();
            self.net.set_tail(true);
        }
        Ok(this)
    }

    /// Removes a listener added with `on`.
    #[napi(
        catch_unwind,
        ts_generic_types = "K extends keyof PerseusEvents",
        ts_args_type = "event: K, listener: (payload: PerseusEvents[K]) => void",
        ts_return_type = "this"
    )]
    pub fn off<'e>(
        &self,
        env: &'e Env,
        this: This<'e>,
        event: Unknown,
        listener: Unknown,
    ) -> napi::Result<This<'e>> {
        let (name, f) = self.event_args(env, event, listener)?;
        let mut listeners = self.listeners.borrow_mut();
        listeners.remove(env, name, &f);
        if tail_topic(name).is_some() && !listeners.any_tail_listener() {
            self.net.set_tail(false);
        }
        Ok(this)
    }

    fn event_args<'a>(
        &self,
        env: &Env,
        event: Unknown<'a>,
        listener: Unknown<'a>,
    ) -> napi::Result<(
        &'static str,
        Function<'a, Unknown<'static>, Unknown<'static>>,
    )> {
        let fail = |e: CoreError| js_error(env, &e);
        let name = crate::node::convert::as_string("event", event).map_err(fail)?;
        let name = EVENT_NAMES
            .iter()
            .find(|n| **n == name)
            .copied()
            .ok_or_else(|| {
                fail(CoreError::invalid(format!(
                    "event must be one of {} (got '{}')",
                    EVENT_NAMES.join(", "),
                    clip(&name)
                )))
            })?;
        if listener.get_type()? != napi::ValueType::Function {
            return Err(fail(CoreError::invalid("listener must be a function")));
        }
        let f = unsafe { listener.cast::<Function<Unknown<'static>, Unknown<'static>>>() }?;
        Ok((name, f))
    }

    #[napi(
        catch_unwind,
        ts_args_type = "options?: { includeDead?: boolean }",
        ts_return_type = "Promise<InstanceInfo[]>"
    )]
    pub fn list_instances<'e>(
        &self,
        env: &'e Env,
        options: Option<Unknown>,
    ) -> napi::Result<Object<'e>> {
        crate::node::batch::flush_now(env);
        let include_dead = match Reader::new(options, "options", "options.")
            .and_then(|r| r.map(|r| r.boolean("includeDead")).transpose())
        {
            Ok(v) => v.flatten().unwrap_or(false),
            Err(e) => return rejected(env, e),
        };
        let net = self.net.clone();
        promise(
            env,
            async move {
                net.list_instances(include_dead)
                    .await
                    .map(|v| JsonText::of(&v))
            },
            |_, v| Ok(v),
        )
    }

    #[napi(
        catch_unwind,
        ts_args_type = "instanceId: string",
        ts_return_type = "Promise<InstanceInfo | null>"
    )]
    pub fn get_instance<'e>(
        &self,
        env: &'e Env,
        instance_id: Option<Unknown>,
    ) -> napi::Result<Object<'e>> {
        crate::node::batch::flush_now(env);
        let id = match instance_id
            .ok_or_else(|| CoreError::invalid("instanceId is required"))
            .and_then(|v| crate::node::convert::as_string("instanceId", v))
        {
            Ok(id) => id,
            Err(e) => return rejected(env, e),
        };
        let net = self.net.clone();
        promise(env, async move { net.get_instance(&id).await }, |_, v| {
            Ok(Json(v))
        })
    }

    #[napi(catch_unwind, ts_return_type = "Promise<NetworkState | null>")]
    pub fn network_state<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        crate::node::batch::flush_now(env);
        let net = self.net.clone();
        promise(env, async move { net.network_state().await }, |_, v| {
            Ok(Json(v))
        })
    }

    #[napi(
        catch_unwind,
        ts_args_type = "input: ActivityInput",
        ts_return_type = "Promise<string>"
    )]
    pub fn log_activity<'e>(
        &self,
        env: &'e Env,
        input: Option<Unknown>,
    ) -> napi::Result<Object<'e>> {
        // Read now (a closed network says so first); the core validates it in the batch,
        // where a bad input fails alone and is not sent.
        let input = match self.net.ensure_open().and_then(|()| {
            Reader::new(input, "input", "input.").and_then(|r| {
                r.ok_or_else(|| CoreError::invalid("input must be an object with an event"))
                    .and_then(|r| read_activity_input(&r))
            })
        }) {
            Ok(i) => i,
            Err(e) => return rejected(env, e),
        };
        crate::node::batch::log_activity(env, &self.net, input)
    }

    /// The `logActivity` front's way in (`batch.js` takes it off the prototype at load; not
    /// part of the API): queues one tick's calls of this network, or takes none (`false`).
    #[napi(catch_unwind, js_name = "__perseusSubmit", skip_typescript)]
    pub fn submit_tick(&self, env: &Env, json: String, token: u32) -> bool {
        crate::node::batch::submit(env, &self.net, &json, token)
    }

    #[napi(
        catch_unwind,
        ts_args_type = "query?: ActivityQuery",
        ts_return_type = "Promise<ActivityEntry[]>"
    )]
    pub fn query_activity<'e>(
        &self,
        env: &'e Env,
        query: Option<Unknown<'e>>,
    ) -> napi::Result<Object<'e>> {
        crate::node::batch::flush_now(env);
        let q = (|| {
            let Some(r) = Reader::new(query, "query", "")? else {
                return make_query(None, None, None, false, None, None);
            };
            let events = match r.raw("event")? {
                None => None,
                Some(v) if v.is_array().unwrap_or(false) => r.strings("event")?,
                Some(v) => Some(vec![crate::node::convert::as_string("event", v)?]),
            };
            make_query(
                r.bound("since")?,
                r.bound("until")?,
                r.number("limit")?,
                r.boolean("reverse")?.unwrap_or(false),
                r.string("instanceId")?,
                events,
            )
        })();
        let q = match q {
            Ok(q) => q,
            Err(e) => return rejected(env, e),
        };
        let net = self.net.clone();
        let p = promise(
            env,
            async move { net.query_activity_json(&q).await.map(JsonText) },
            |_, v| Ok(v),
        )?;
        crate::node::diag::trace_query(
            env,
            self.net.instance_id(),
            crate::node::diag::standalone_server(&self.net.config().connection.target).as_deref(),
            query,
            p,
        )
    }

    #[napi(
        catch_unwind,
        ts_args_type = "retentionMs?: number",
        ts_return_type = "Promise<number>"
    )]
    pub fn trim_activity<'e>(
        &self,
        env: &'e Env,
        retention_ms: Option<Unknown>,
    ) -> napi::Result<Object<'e>> {
        crate::node::batch::flush_now(env);
        let retention = match retention_ms
            .map(|v| {
                crate::node::convert::as_number("retentionMs", v).and_then(|n| {
                    crate::core::config::ms_opt("retentionMs", Some(n), 0.0)
                        .map(|d| d.map(|d| d.as_millis() as u64).unwrap_or(0))
                })
            })
            .transpose()
        {
            Ok(r) => r,
            Err(e) => return rejected(env, e),
        };
        let net = self.net.clone();
        promise(
            env,
            async move { net.trim_activity(retention).await },
            |_, n| Ok(n as f64),
        )
    }

    #[napi(catch_unwind, ts_return_type = "Promise<number>")]
    pub fn activity_length<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        crate::node::batch::flush_now(env);
        let net = self.net.clone();
        promise(env, async move { net.activity_length().await }, |_, n| {
            Ok(n as f64)
        })
    }

    /// Asks a running instance to drain; it hears it within one of its heartbeat intervals.
    #[napi(
        catch_unwind,
        ts_args_type = "instanceId: string, reason?: string",
        ts_return_type = "Promise<boolean>"
    )]
    pub fn request_drain<'e>(
        &self,
        env: &'e Env,
        instance_id: Option<Unknown>,
        reason: Option<Unknown>,
    ) -> napi::Result<Object<'e>> {
        let args = required_id(instance_id).and_then(|id| Ok((id, optional_reason(reason)?)));
        let (id, reason) = match args {
            Ok(a) => a,
            Err(e) => return rejected(env, e),
        };
        let net = self.net.clone();
        promise(
            env,
            async move { net.request_drain(&id, reason).await },
            |_, ok| Ok(ok),
        )
    }

    /// Deletes a dead instance's record, heartbeat key and index entry (FORGOTTEN entry).
    #[napi(
        catch_unwind,
        ts_args_type = "instanceId: string, options?: { force?: boolean }",
        ts_return_type = "Promise<boolean>"
    )]
    pub fn forget_instance<'e>(
        &self,
        env: &'e Env,
        instance_id: Option<Unknown>,
        options: Option<Unknown>,
    ) -> napi::Result<Object<'e>> {
        let args = required_id(instance_id).and_then(|id| {
            let force = Reader::new(options, "options", "options.")?
                .map(|r| r.boolean("force"))
                .transpose()?
                .flatten()
                .unwrap_or(false);
            Ok((id, force))
        });
        let (id, force) = match args {
            Ok(a) => a,
            Err(e) => return rejected(env, e),
        };
        let net = self.net.clone();
        promise(
            env,
            async move { net.forget_instance(&id, force).await },
            |_, ok| Ok(ok),
        )
    }

    /// Who holds the sweeper lease and for how much longer; null when nobody does.
    #[napi(catch_unwind, ts_return_type = "Promise<SweeperLease | null>")]
    pub fn sweeper<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        let net = self.net.clone();
        promise(env, async move { net.sweeper().await }, |_, v| Ok(Json(v)))
    }

    /// The network-wide numbers (counts by state, alive, stream length, lease holder) as the
    /// core counts them, for consoles such as the dashboard's `/metrics`.
    #[napi(catch_unwind, ts_return_type = "Promise<NetworkSummary>")]
    pub fn network_summary<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        crate::node::batch::flush_now(env);
        let net = self.net.clone();
        promise(env, async move { net.summary().await }, |_, v| Ok(Json(v)))
    }

    /// This process's counters and gauges in the Prometheus text format 0.0.4.
    #[napi(catch_unwind, ts_return_type = "Promise<string>")]
    pub fn metrics<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        let net = self.net.clone();
        promise(env, async move { net.metrics_text() }, |_, v| Ok(v))
    }
}

impl Drop for PerseusNetwork {
    /// Garbage-collected without close(): stop background tasks so nothing runs for an
    /// object nobody can reach.
    fn drop(&mut self) {
        self.net.abort();
        crate::core::events::EventSink::close(self.sink.as_ref());
    }
}

fn required_id(v: Option<Unknown>) -> Result<String, CoreError> {
    let id = v
        .ok_or_else(|| CoreError::invalid("instanceId is required"))
        .and_then(|v| crate::node::convert::as_string("instanceId", v))?;
    Ok(id) // checked by the core (`Network::request_drain`, `forget_instance`)
}

fn optional_reason(v: Option<Unknown>) -> Result<Option<String>, CoreError> {
    let Some(v) = v else { return Ok(None) };
    if v.get_type().map_err(crate::node::convert::napi_err)? == napi::ValueType::Undefined {
        return Ok(None);
    }
    // Its length is checked by the core (`Network::request_drain`).
    crate::node::convert::as_string("reason", v).map(Some)
}
