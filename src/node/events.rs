//! Events and logs from the core to JS, through the JS thread's one queue (see `runtime`).
//!
//! A network holds the process only while its instance is started, so a network that is
//! idle, drained or closed never keeps Node alive. On the JS thread its dispatcher delivers
//! to listeners and the logger; a throwing listener or logger is
//! logged and ignored, never propagated.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

use napi::bindgen_prelude::{FnArgs, Function, FunctionRef, ObjectRef, Unknown};
use napi::Env;
use serde_json::{Map, Value};

use crate::core::config::LogLevel;
use crate::core::events::{EventSink, NetEvent, Topic};
use crate::core::logging::LogSink;
use crate::core::trace::{Trace, TraceKind, Tracer};
use crate::core::watchdog::Watchdog;
use crate::node::diag;
use crate::node::errors::js_error_value;
use crate::node::runtime::{self, Link};

/// The event names of `PerseusEvents`.
pub const EVENT_NAMES: [&str; 8] = [
    "stateChange",
    "instanceJoined",
    "instanceLeft",
    "instanceLost",
    "activity",
    "connection",
    "error",
    "drainRequested",
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
    /// A finished operation, for diagnostics_channel (queued only while traced).
    Trace(Box<Trace>),
    Ping,
    /// The network is closed: drop listeners and stop holding the process.
    Closed,
}

/// The JS-thread half: listeners, logger and watchdog of one network.
struct Dispatcher {
    instance_id: String,
    level: LogLevel,
    listeners: Rc<RefCell<Listeners>>,
    logger: RefCell<Option<ObjectRef<false>>>,
    watchdog: Arc<Watchdog>,
    hold: Arc<Hold>,
    /// `host:port` of a standalone target, for diagnostics messages.
    server: Option<String>,
}

thread_local! {
    /// The dispatchers of this JS thread's networks, by id.
    static DISPATCHERS: RefCell<HashMap<u64, Rc<Dispatcher>>> = RefCell::new(HashMap::new());
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Whether a network holds the process (it is started); flipped on the JS thread only.
#[derive(Default)]
pub struct Hold(AtomicBool);

impl Hold {
    /// Holds or releases the process; idempotent per network.
    fn set(&self, env: &Env, on: bool) {
        if self.0.swap(on, AtomicOrdering::AcqRel) != on {
            runtime::hold_process(env, on);
        }
    }
}

/// The runtime half: implements the core's sinks by queueing jobs on the JS thread's queue
/// (the same queue that settles promises, so events keep their order relative to results).
pub struct NodeSink {
    id: u64,
    link: Arc<Link>,
    hold: Arc<Hold>,
    closed: AtomicBool,
    /// The JS thread's diagnostics_channel subscriber mask (see `diag`).
    traced: Arc<AtomicU32>,
}

impl NodeSink {
    /// Registers the network's dispatcher on this JS thread.
    pub fn new(
        env: &Env,
        instance_id: &str,
        level: LogLevel,
        listeners: Rc<RefCell<Listeners>>,
        logger: Option<ObjectRef<false>>,
        watchdog: Arc<Watchdog>,
        server: Option<String>,
    ) -> napi::Result<Arc<NodeSink>> {
        let id = NEXT_ID.fetch_add(1, AtomicOrdering::Relaxed);
        let hold = Arc::new(Hold::default());
        let dispatcher = Dispatcher {
            instance_id: instance_id.to_string(),
            level,
            listeners,
            logger: RefCell::new(logger),
            watchdog,
            hold: hold.clone(),
            server,
        };
        DISPATCHERS.with(|d| d.borrow_mut().insert(id, Rc::new(dispatcher)));
        Ok(Arc::new(NodeSink {
            id,
            link: runtime::js_thread_link(env)?,
            hold,
            closed: AtomicBool::new(false),
            traced: diag::mask(),
        }))
    }

    fn send(&self, msg: Msg) {
        let id = self.id;
        self.link.send(Box::new(move |env: &Env| {
            let dispatcher = DISPATCHERS.with(|d| d.borrow().get(&id).cloned());
            if let Some(d) = dispatcher {
                d.dispatch(env, id, msg);
            }
        }));
    }

    /// Keep the process alive (started) or not. JS thread only.
    pub fn hold(&self, env: &Env, on: bool) {
        if !self.closed.load(AtomicOrdering::Acquire) {
            self.hold.set(env, on);
        }
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
        // Listeners hear everything queued before this; then the dispatcher goes.
        if !self.closed.swap(true, AtomicOrdering::AcqRel) {
            self.send(Msg::Closed);
        }
    }
}

impl Tracer for NodeSink {
    fn traced(&self, kind: TraceKind) -> bool {
        self.traced.load(AtomicOrdering::Acquire) & diag::bit(kind) != 0
    }
    fn trace(&self, trace: Trace) {
        self.send(Msg::Trace(Box::new(trace)));
    }
}

impl LogSink for NodeSink {
    fn log(&self, level: LogLevel, fields: Map<String, Value>, msg: String) {
        self.send(Msg::Log(level, fields, msg));
    }
}

impl Dispatcher {
    fn dispatch(&self, env: &Env, id: u64, msg: Msg) {
        match msg {
            Msg::Ping => self.watchdog.pong(),
            Msg::Closed => {
                self.listeners.borrow_mut().clear();
                if let Some(logger) = self.logger.borrow_mut().take() {
                    let _ = logger.unref(env);
                }
                self.hold.set(env, false);
                DISPATCHERS.with(|d| d.borrow_mut().remove(&id));
            }
            Msg::Log(level, fields, text) => self.log(env, level, fields, &text),
            Msg::Trace(t) => {
                if let Err(e) = diag::publish(env, &self.instance_id, self.server.as_deref(), *t) {
                    let mut f = Map::new();
                    f.insert("instanceId".into(), self.instance_id.clone().into());
                    f.insert("error".into(), e.reason.clone().into());
                    self.log(
                        env,
                        LogLevel::Debug,
                        f,
                        "a diagnostics_channel message was not published",
                    );
                }
            }
            Msg::Event(ev) => match *ev {
                NetEvent::Released => self.hold.set(env, false),
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
            NetEvent::DrainRequested(r) => ("drainRequested", to_js(env, &r)),
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
                ("error", js_error_value(env, &e))
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
        let logger = self.logger.borrow();
        let Some(logger) = logger.as_ref() else {
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
