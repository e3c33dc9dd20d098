//! Events and logs from the core to JS, through one weak threadsafe function per network.
//!
//! The threadsafe function is unreferenced (weak) except while the instance is started, so
//! a network that is idle, drained or closed never keeps the process alive. On the JS thread
//! its callback dispatches to listeners and the logger; a throwing listener or logger is
//! logged and ignored, never propagated.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{FnArgs, Function, FunctionRef, ObjectRef, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status};
use serde_json::{Map, Value};

use crate::core::config::LogLevel;
use crate::core::events::{EventSink, NetEvent, Topic};
use crate::core::heartbeat::Watchdog;
use crate::core::logging::LogSink;
use crate::node::errors::js_error;

/// The event names of `PerseusEvents`.
pub const EVENT_NAMES: [&str; 7] = [
    "stateChange",
    "instanceJoined",
    "instanceLeft",
    "instanceLost",
    "activity",
    "connection",
    "error",
];

/// Events served by tailing the activity stream.
pub fn tail_topic(name: &str) -> Option<Topic> {
    match name {
        "activity" => Some(Topic::Activity),
        "instanceJoined" => Some(Topic::InstanceJoined),
        "instanceLeft" => Some(Topic::InstanceLeft),
        "instanceLost" => Some(Topic::InstanceLost),
        _ => None,
    }
}

type Listener = FunctionRef<Unknown<'static>, Unknown<'static>>;

/// Listeners by event name, in registration order. JS thread only.
#[derive(Default)]
pub struct Listeners {
    by_event: Vec<(&'static str, Vec<Rc<Listener>>)>,
}

impl Listeners {
    pub fn add(&mut self, name: &'static str, f: Listener) {
        match self.by_event.iter_mut().find(|(n, _)| *n == name) {
            Some((_, list)) => list.push(Rc::new(f)),
            None => self.by_event.push((name, vec![Rc::new(f)])),
        }
    }

    /// Removes the most recently added registration of `f` (as EventEmitter does).
    pub fn remove(&mut self, env: &Env, name: &str, f: &Function<Unknown, Unknown>) {
        if let Some((_, list)) = self.by_event.iter_mut().find(|(n, _)| *n == name) {
            let pos = list.iter().rposition(|l| {
                l.borrow_back(env)
                    .and_then(|g| env.strict_equals(g, *f))
                    .unwrap_or(false)
            });
            if let Some(i) = pos {
                list.remove(i);
            }
        }
    }

    pub fn get(&self, name: &str) -> Vec<Rc<Listener>> {
        self.by_event
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    }

    pub fn any_tail_listener(&self) -> bool {
        self.by_event
            .iter()
            .any(|(n, l)| tail_topic(n).is_some() && !l.is_empty())
    }

    pub fn clear(&mut self) {
        self.by_event.clear();
    }
}

/// What crosses from the runtime to the JS thread.
pub enum Msg {
    Event(Box<NetEvent>),
    Log(LogLevel, Map<String, Value>, String),
    Ping,
    /// The network is closed: drop listeners and stop holding the process.
    Closed,
}

type Tsfn = ThreadsafeFunction<Msg, (), (), Status, false, true, 0>;

/// The JS-thread half: what the threadsafe function's callback needs.
struct Dispatcher {
    instance_id: String,
    level: LogLevel,
    listeners: Rc<RefCell<Listeners>>,
    logger: Option<ObjectRef<false>>,
    watchdog: Arc<Watchdog>,
    tsfn: Arc<Mutex<Option<Tsfn>>>,
}

/// The runtime half: implements the core's sinks by queueing onto the threadsafe function.
pub struct NodeSink {
    tsfn: Arc<Mutex<Option<Tsfn>>>,
}

impl NodeSink {
    /// Builds the weak threadsafe function and its dispatcher.
    pub fn new(
        env: &Env,
        instance_id: &str,
        level: LogLevel,
        listeners: Rc<RefCell<Listeners>>,
        logger: Option<ObjectRef<false>>,
        watchdog: Arc<Watchdog>,
    ) -> napi::Result<Arc<NodeSink>> {
        let slot: Arc<Mutex<Option<Tsfn>>> = Arc::new(Mutex::new(None));
        let dispatcher = Dispatcher {
            instance_id: instance_id.to_string(),
            level,
            listeners,
            logger,
            watchdog,
            tsfn: slot.clone(),
        };
        let noop =
            env.create_function_from_closure::<(), (), _>("perseusDispatch", |_ctx| Ok(()))?;
        let tsfn: Tsfn = noop
            .build_threadsafe_function::<Msg>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(move |ctx| {
                // A bug here must not unwind into Node: drop the message instead.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    dispatcher.dispatch(&ctx.env, ctx.value)
                }));
                Ok(())
            })?;
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(tsfn);
        Ok(Arc::new(NodeSink { tsfn: slot }))
    }

    fn send(&self, msg: Msg) {
        if let Some(t) = self.tsfn.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            t.call(msg, ThreadsafeFunctionCallMode::NonBlocking);
        }
    }

    /// Keep the process alive (started) or not. JS thread only.
    #[allow(deprecated)]
    pub fn hold(&self, env: &Env, on: bool) {
        set_hold(&self.tsfn, env, on);
    }
}

#[allow(deprecated)]
fn set_hold(slot: &Mutex<Option<Tsfn>>, env: &Env, on: bool) {
    if let Some(t) = slot.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        let _ = if on { t.refer(env) } else { t.unref(env) };
    }
}

impl EventSink for NodeSink {
    fn emit(&self, event: NetEvent) {
        self.send(Msg::Event(Box::new(event)));
    }
    fn ping(&self, _watchdog: &Arc<Watchdog>) {
        // Answered by the dispatcher on the JS thread (it holds the same watchdog).
        self.send(Msg::Ping);
    }
    fn close(&self) {
        // Listeners hear everything queued before this; dropping the function then releases
        // it (queued calls are still delivered first).
        self.send(Msg::Closed);
        self.tsfn.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

impl LogSink for NodeSink {
    fn log(&self, level: LogLevel, fields: Map<String, Value>, msg: String) {
        self.send(Msg::Log(level, fields, msg));
    }
}

impl Dispatcher {
    fn dispatch(&self, env: &Env, msg: Msg) {
        match msg {
            Msg::Ping => self.watchdog.pong(),
            Msg::Closed => {
                self.listeners.borrow_mut().clear();
                set_hold(&self.tsfn, env, false);
            }
            Msg::Log(level, fields, text) => self.log(env, level, fields, &text),
            Msg::Event(ev) => match *ev {
                NetEvent::Released => set_hold(&self.tsfn, env, false),
                ev => self.emit(env, ev),
            },
        }
    }

    fn emit(&self, env: &Env, ev: NetEvent) {
        let (name, payload): (&str, napi::Result<Unknown>) = match ev {
            NetEvent::StateChange(c) => ("stateChange", to_js(env, &c)),
            NetEvent::InstanceJoined(i) => ("instanceJoined", to_js(env, &i)),
            NetEvent::InstanceLeft(i) => ("instanceLeft", to_js(env, &i)),
            NetEvent::InstanceLost(i) => ("instanceLost", to_js(env, &i)),
            NetEvent::Activity(a) => ("activity", to_js(env, &a)),
            NetEvent::Connection { connected, error } => {
                let mut m = Map::new();
                m.insert(
                    "status".into(),
                    if connected {
                        "connected"
                    } else {
                        "disconnected"
                    }
                    .into(),
                );
                if let Some(e) = error {
                    m.insert("error".into(), e.into());
                }
                ("connection", to_js(env, &Value::Object(m)))
            }
            NetEvent::Error(e) => {
                let listeners = self.listeners.borrow().get("error");
                if listeners.is_empty() {
                    // Unlike a bare EventEmitter, an unheard error is logged, never thrown.
                    let mut f = Map::new();
                    f.insert("instanceId".into(), self.instance_id.clone().into());
                    f.insert("code".into(), e.code().into());
                    self.log(env, LogLevel::Error, f, &format!("background error: {e}"));
                    return;
                }
                let err = js_error(env, &e);
                let value =
                    unsafe { napi::bindgen_prelude::ToNapiValue::to_napi_value(env.raw(), err) }
                        .and_then(|raw| unsafe {
                            napi::bindgen_prelude::FromNapiValue::from_napi_value(env.raw(), raw)
                        });
                ("error", value)
            }
            NetEvent::Released => return,
        };
        let Ok(payload) = payload else { return };
        // Snapshot: a listener may call on/off while we iterate.
        let listeners = self.listeners.borrow().get(name);
        for l in listeners {
            let outcome = l.borrow_back(env).and_then(|f| f.call(payload));
            if let Err(e) = outcome {
                let mut f = Map::new();
                f.insert("instanceId".into(), self.instance_id.clone().into());
                f.insert("event".into(), name.into());
                f.insert("error".into(), e.reason.clone().into());
                self.log(env, LogLevel::Error, f, "an event listener threw; ignored");
            }
        }
    }

    /// Calls `logger[level](fields, msg)`; without a logger, warn and error go to stderr.
    fn log(&self, env: &Env, level: LogLevel, fields: Map<String, Value>, msg: &str) {
        if level < self.level || self.level == LogLevel::Silent {
            return;
        }
        let Some(logger) = &self.logger else {
            if level >= LogLevel::Warn {
                let mut f = fields;
                f.insert("level".into(), level.as_str().into());
                f.insert("msg".into(), msg.into());
                eprintln!("{}", Value::Object(f));
            }
            return;
        };
        let call = || -> napi::Result<()> {
            let obj = logger.get_value(env)?;
            let method: Option<Function<FnArgs<(Unknown, String)>, Unknown>> =
                obj.get(level.as_str()).ok().flatten();
            let method = match method {
                Some(m) => m,
                // `trace` is optional in the Logger interface: fall back to debug.
                None => match obj.get("debug")? {
                    Some(m) => m,
                    None => return Ok(()),
                },
            };
            let fields = env.to_js_value(&Value::Object(fields))?;
            method.apply(obj, (fields, msg.to_string()).into())?;
            Ok(())
        };
        if let Err(e) = call() {
            eprintln!(
                "{}",
                serde_json::json!({ "level": "error", "msg": "the logger threw; record dropped", "error": e.reason })
            );
        }
    }
}

fn to_js<'e, T: serde::Serialize>(env: &'e Env, v: &T) -> napi::Result<Unknown<'e>> {
    env.to_js_value(v)
}
