//! JS values in (options, inputs, queries) and out (records as plain objects).
//!
//! Inputs are read property by property so a wrong type gets our INVALID_OPTION error naming
//! the property, not a generic conversion failure.

use napi::bindgen_prelude::{
    FromNapiValue, Function, JsObjectValue, JsValue, Object, ToNapiValue, Unknown,
};
use napi::{sys, Env, ValueType};
use serde::Serialize;

use crate::core::activity::{ActivityInput, Bound};
use crate::core::config::{PublicIpOption, RawOptions};
use crate::core::error::Error as CoreError;
use crate::core::fsm::State;

type Res<T> = Result<T, CoreError>;

/// A serde value converted to a plain JS value on the JS thread.
pub struct Json<T: Serialize>(pub T);

impl<T: Serialize> ToNapiValue for Json<T> {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        let env = Env::from_raw(env);
        Ok(env.to_js_value(&val.0)?.raw())
    }
}

/// A large result serialised to JSON on the runtime and parsed by V8's `JSON.parse` on the
/// JS thread: one string crossing instead of millions of property sets through napi, so the
/// JS thread is blocked far less for big query results.
pub struct JsonText(pub String);

impl JsonText {
    /// Serialises `v` (on the runtime thread, before crossing).
    pub fn of<T: Serialize>(v: &T) -> Self {
        JsonText(serde_json::to_string(v).unwrap_or_else(|_| "null".into()))
    }
}

impl ToNapiValue for JsonText {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        let env = Env::from_raw(env);
        let json: Object = env.get_global()?.get_named_property("JSON")?;
        let parse: Function<String, Unknown> = json.get_named_property("parse")?;
        Ok(parse.apply(json, val.0)?.raw())
    }
}

/// Reads typed properties of one JS object; `path` prefixes property names in messages.
pub struct Reader<'a> {
    obj: Object<'a>,
    path: &'static str,
}

impl<'a> Reader<'a> {
    /// `value` must be an object (or undefined, read as empty, when `optional`).
    pub fn new(
        value: Option<Unknown<'a>>,
        what: &'static str,
        path: &'static str,
    ) -> Res<Option<Self>> {
        let Some(v) = value else { return Ok(None) };
        match v.get_type().map_err(napi_err)? {
            ValueType::Undefined => Ok(None),
            ValueType::Object => Ok(Some(Reader {
                obj: v.coerce_to_object().map_err(napi_err)?,
                path,
            })),
            _ => Err(CoreError::invalid(format!("{what} must be an object"))),
        }
    }

    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.path)
    }

    /// The property, or `None` when undefined.
    pub fn raw(&self, key: &str) -> Res<Option<Unknown<'a>>> {
        let v: Option<Unknown> = self.obj.get(key).map_err(napi_err)?;
        match v {
            Some(v) if v.get_type().map_err(napi_err)? != ValueType::Undefined => Ok(Some(v)),
            _ => Ok(None),
        }
    }

    pub fn string(&self, key: &str) -> Res<Option<String>> {
        self.raw(key)?
            .map(|v| as_string(&self.name(key), v))
            .transpose()
    }

    pub fn number(&self, key: &str) -> Res<Option<f64>> {
        self.raw(key)?
            .map(|v| as_number(&self.name(key), v))
            .transpose()
    }

    pub fn boolean(&self, key: &str) -> Res<Option<bool>> {
        match self.raw(key)? {
            None => Ok(None),
            Some(v) if v.get_type().map_err(napi_err)? == ValueType::Boolean => Ok(Some(
                unsafe { bool::from_napi_value(v.value().env, v.raw()) }.map_err(napi_err)?,
            )),
            Some(_) => Err(CoreError::invalid(format!(
                "{} must be a boolean",
                self.name(key)
            ))),
        }
    }

    pub fn strings(&self, key: &str) -> Res<Option<Vec<String>>> {
        let Some(v) = self.raw(key)? else {
            return Ok(None);
        };
        let name = self.name(key);
        if !v.is_array().map_err(napi_err)? {
            return Err(CoreError::invalid(format!(
                "{name} must be an array of strings"
            )));
        }
        let arr = v.coerce_to_object().map_err(napi_err)?;
        let len: u32 = arr.get("length").map_err(napi_err)?.unwrap_or(0);
        (0..len)
            .map(|i| {
                let item: Unknown = arr.get_element(i).map_err(napi_err)?;
                as_string(&format!("{name}[{i}]"), item)
            })
            .collect::<Res<Vec<_>>>()
            .map(Some)
    }

    /// A `Record<string, string>`, in property order.
    pub fn string_record(&self, key: &str) -> Res<Option<Vec<(String, String)>>> {
        let name = self.name(key);
        let Some(v) = self.raw(key)? else {
            return Ok(None);
        };
        if v.get_type().map_err(napi_err)? != ValueType::Object || v.is_array().map_err(napi_err)? {
            return Err(CoreError::invalid(format!(
                "{name} must be an object of strings"
            )));
        }
        let obj = v.coerce_to_object().map_err(napi_err)?;
        let keys = Object::keys(&obj).map_err(napi_err)?;
        keys.into_iter()
            .map(|k| {
                let item: Unknown = obj
                    .get(&k)
                    .map_err(napi_err)?
                    .ok_or_else(|| CoreError::invalid(format!("{name}.{k} must be a string")))?;
                let val = as_string(&format!("{name}.{k}"), item)?;
                Ok((k, val))
            })
            .collect::<Res<Vec<_>>>()
            .map(Some)
    }

    pub fn state(&self, key: &str) -> Res<Option<State>> {
        self.string(key)?
            .map(|s| parse_state(&self.name(key), &s))
            .transpose()
    }

    /// A query bound: ms epoch number, `Date`, or stream-ID string.
    pub fn bound(&self, key: &str) -> Res<Option<Bound>> {
        let Some(v) = self.raw(key)? else {
            return Ok(None);
        };
        let name = self.name(key);
        match v.get_type().map_err(napi_err)? {
            ValueType::Number => Ok(Some(Bound::Ms(as_number(&name, v)?))),
            ValueType::String => Ok(Some(Bound::Id(as_string(&name, v)?))),
            ValueType::Object if v.is_date().map_err(napi_err)? => {
                let date = unsafe { napi::JsDate::from_napi_value(v.value().env, v.raw()) }
                    .map_err(napi_err)?;
                Ok(Some(Bound::Ms(date.value_of().map_err(napi_err)?)))
            }
            _ => Err(CoreError::invalid(format!(
                "{name} must be a ms epoch number, a Date or a stream ID string"
            ))),
        }
    }
}

/// A state name, or the error naming the property `name` (one message for every reader).
pub fn parse_state(name: &str, s: &str) -> Res<State> {
    s.parse().map_err(|_| {
        CoreError::invalid(format!(
            "{name} must be one of idle, registering, running, draining, dead (got '{}')",
            crate::core::redact::clip(s)
        ))
    })
}

pub fn as_string(name: &str, v: Unknown) -> Res<String> {
    if v.get_type().map_err(napi_err)? != ValueType::String {
        return Err(CoreError::invalid(format!("{name} must be a string")));
    }
    unsafe { String::from_napi_value(v.value().env, v.raw()) }.map_err(napi_err)
}

pub fn as_number(name: &str, v: Unknown) -> Res<f64> {
    if v.get_type().map_err(napi_err)? != ValueType::Number {
        return Err(CoreError::invalid(format!("{name} must be a number")));
    }
    unsafe { f64::from_napi_value(v.value().env, v.raw()) }.map_err(napi_err)
}

/// A failure of the JS engine itself while reading input (e.g. a throwing getter).
pub fn napi_err(e: napi::Error) -> CoreError {
    CoreError::invalid(format!("could not read the argument: {}", e.reason))
}

/// `PerseusOptions` → `RawOptions`.
pub fn read_options(r: &Reader) -> Res<RawOptions> {
    let public_ip = match r.raw("publicIp")? {
        None => None,
        Some(v) => match v.get_type().map_err(napi_err)? {
            ValueType::String => Some(PublicIpOption::Fixed(as_string("publicIp", v)?)),
            ValueType::Boolean
                if !unsafe { bool::from_napi_value(v.value().env, v.raw()) }
                    .map_err(napi_err)? =>
            {
                Some(PublicIpOption::Disabled)
            }
            _ => {
                return Err(CoreError::invalid(
                    "publicIp must be an IP address string or false",
                ))
            }
        },
    };
    Ok(RawOptions {
        redis_url: r.string("redisUrl")?,
        cluster_nodes: r.strings("clusterNodes")?,
        username: r.string("username")?,
        password: r.string("password")?,
        tls_ca_cert: r.string("tlsCaCert")?,
        tls_insecure: r.boolean("tlsInsecure")?,
        key_prefix: r.string("keyPrefix")?,
        connect_timeout_ms: r.number("connectTimeoutMs")?,
        command_timeout_ms: r.number("commandTimeoutMs")?,
        exchange_id: r.number("exchangeId")?,
        exchange_name: r.string("exchangeName")?,
        version: r.string("version")?,
        hostname: r.string("hostname")?,
        instance_id: r.string("instanceId")?,
        metadata: r.string_record("metadata")?,
        public_ip,
        public_ip_endpoints: r.strings("publicIpEndpoints")?,
        public_ip_timeout_ms: r.number("publicIpTimeoutMs")?,
        heartbeat_interval_ms: r.number("heartbeatIntervalMs")?,
        heartbeat_ttl_ms: r.number("heartbeatTtlMs")?,
        sweep_interval_ms: r.number("sweepIntervalMs")?,
        activity_retention_ms: r.number("activityRetentionMs")?,
        activity_replicas: r.number("activityReplicas")?,
        trim_interval_ms: r.number("trimIntervalMs")?,
        dead_instance_ttl_ms: r.number("deadInstanceTtlMs")?,
        discovery: r.string("discovery")?,
        on_heartbeat_lost: r.string("onHeartbeatLost")?,
        on_drain_request: r.string("onDrainRequest")?,
        event_loop_stall_ms: r.number("eventLoopStallMs")?,
        log_level: r.string("logLevel")?,
        pid: None,
    })
}

/// `ActivityInput` → core input.
pub fn read_activity_input(r: &Reader) -> Res<ActivityInput> {
    Ok(ActivityInput {
        event: r
            .string("event")?
            .ok_or_else(|| CoreError::invalid("input.event is required"))?,
        reason: r.string("reason")?,
        from_state: r.state("fromState")?,
        to_state: r.state("toState")?,
        fields: r.string_record("fields")?.unwrap_or_default(),
        idempotency_key: r.string("idempotencyKey")?,
    })
}
