//! The free functions of the API: FSM step, identity helpers, public IP detection.

use napi::bindgen_prelude::{JsObjectValue, Object, Unknown};
use napi::Env;
use napi_derive::napi;

use crate::core::config::{make_instance_id, ms_opt, DEFAULT_PUBLIC_IP_ENDPOINTS};
use crate::core::error::Error as CoreError;
use crate::core::fsm::{next_state, Event, State, TRANSITIONS};
use crate::core::ip;
use crate::node::convert::{as_number, as_string, Reader};
use crate::node::errors::js_error;
use crate::node::runtime::promise;

/// Pure FSM step: the next state, or null when (from, event) is not legal.
#[napi(
    catch_unwind,
    js_name = "nextState",
    ts_args_type = "from: InstanceState, event: LifecycleEvent",
    ts_return_type = "InstanceState | null"
)]
pub fn next_state_js(
    env: Env,
    from: Unknown,
    event: Unknown,
) -> napi::Result<Option<&'static str>> {
    let fail = |e: CoreError| js_error(&env, &e);
    let from = as_string("from", from).map_err(fail)?;
    let event = as_string("event", event).map_err(fail)?;
    let from: State = from.parse().map_err(|_| {
        fail(CoreError::invalid(format!(
            "from must be one of idle, registering, running, draining, dead (got '{}')",
            crate::core::redact::clip(&from)
        )))
    })?;
    let event: Event = event.parse().map_err(|_| {
        fail(CoreError::invalid(format!(
            "event must be one of REGISTER, REGISTERED, DRAIN, DRAINED, ERROR, HEARTBEAT_LOST (got '{}')",
            crate::core::redact::clip(&event)
        )))
    })?;
    Ok(next_state(from, event).map(State::as_str))
}

/// `${hostname}:${exchangeId}:${pid}:${startedAtMs}`
#[napi(
    catch_unwind,
    js_name = "makeInstanceId",
    ts_args_type = "hostname: string, exchangeId: number, pid: number, startedAtMs: number"
)]
pub fn make_instance_id_js(
    env: Env,
    hostname: Unknown,
    exchange_id: Unknown,
    pid: Unknown,
    started_at_ms: Unknown,
) -> napi::Result<String> {
    let fail = |e: CoreError| js_error(&env, &e);
    let hostname = as_string("hostname", hostname).map_err(fail)?;
    let int = |name: &str, v: Unknown| -> Result<u64, CoreError> {
        let n = as_number(name, v)?;
        if n.is_finite() && n.fract() == 0.0 && (0.0..=9007199254740991.0).contains(&n) {
            Ok(n as u64)
        } else {
            Err(CoreError::invalid(format!(
                "{name} must be a safe integer >= 0 (got {n})"
            )))
        }
    };
    let id = make_instance_id(
        &hostname,
        int("exchangeId", exchange_id).map_err(fail)?,
        int("pid", pid).map_err(fail)?,
        int("startedAtMs", started_at_ms).map_err(fail)?,
    );
    crate::core::config::validate_instance_id("the resulting instance id", &id).map_err(fail)?;
    Ok(id)
}

/// First non-internal IPv4 address of this host's interfaces, else null.
#[napi(catch_unwind, js_name = "privateIp")]
pub fn private_ip_js() -> Option<String> {
    ip::private_ip()
}

/// Never rejects: null when no endpoint gave a valid address. A malformed endpoint is
/// skipped like an unreachable one, and malformed options read as "nothing to ask" (null),
/// each logged at debug.
#[napi(
    catch_unwind,
    js_name = "detectPublicIp",
    ts_args_type = "options?: PublicIpOptions",
    ts_return_type = "Promise<string | null>"
)]
pub fn detect_public_ip_js<'e>(env: &'e Env, options: Option<Unknown>) -> napi::Result<Object<'e>> {
    let default_timeout = std::time::Duration::from_millis(5000);
    let parsed = (|| {
        let r = Reader::new(options, "options", "")?;
        let endpoints = match &r {
            Some(r) => r.strings("endpoints")?,
            None => None,
        };
        let timeout = match &r {
            Some(r) => ms_opt("timeoutMs", r.number("timeoutMs")?, 1.0)?,
            None => None,
        };
        Ok::<_, CoreError>((
            endpoints.unwrap_or_else(|| {
                DEFAULT_PUBLIC_IP_ENDPOINTS
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            }),
            timeout.unwrap_or(default_timeout),
        ))
    })();
    let (endpoints, timeout) = match parsed {
        Ok((endpoints, timeout)) => (ip::usable_endpoints(endpoints), timeout),
        Err(e) => {
            tracing::debug!("detectPublicIp: {e}; resolving null");
            (Vec::new(), default_timeout)
        }
    };
    promise(
        env,
        async move { Ok(ip::detect_public_ip(&endpoints, timeout).await) },
        |_, v| Ok(v),
    )
}

/// Adds `TRANSITIONS` (a frozen array of frozen `{ from, event, to }`) and
/// `diagnosticsChannels` (with the channels' glue, see `diag`) to the exports, and puts the
/// `logActivity` front over the class (see `batch`).
#[napi(module_exports)]
pub fn init(mut exports: Object, env: Env) -> napi::Result<()> {
    let mut list = env.create_array(TRANSITIONS.len() as u32)?;
    for (i, t) in TRANSITIONS.iter().enumerate() {
        let mut o = Object::new(&env)?;
        o.set("from", t.from.as_str())?;
        o.set("event", t.event.as_str())?;
        o.set("to", t.to.as_str())?;
        o.freeze()?;
        list.set(i as u32, o)?;
    }
    let mut list_obj: Object = list.coerce_to_object()?;
    list_obj.freeze()?;
    exports.set("TRANSITIONS", list_obj)?;
    crate::node::diag::install(&env, &mut exports)?;
    crate::node::batch::install(&env, &exports)?;
    Ok(())
}
