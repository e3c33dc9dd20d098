//! Structured logs: every record goes to `tracing` and, at or above the configured level, to
//! the host's sink (a pino-style logger in Node). Records never carry secrets: callers only
//! pass scrubbed error texts.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::core::config::LogLevel;

/// Receives records that passed the level filter.
pub trait LogSink: Send + Sync {
    fn log(&self, level: LogLevel, fields: Map<String, Value>, msg: String);
}

/// Writes warn and error records to stderr as JSON lines: the default when the host gave no
/// logger, so failures are never silent and routine records never clutter a terminal.
struct StderrSink;

impl LogSink for StderrSink {
    fn log(&self, level: LogLevel, mut fields: Map<String, Value>, msg: String) {
        if level >= LogLevel::Warn {
            fields.insert("level".into(), level.as_str().into());
            fields.insert("msg".into(), msg.into());
            eprintln!("{}", Value::Object(fields));
        }
    }
}

/// A per-network logger that stamps every record with the instance id.
#[derive(Clone)]
pub struct Logger {
    level: LogLevel,
    sink: Arc<dyn LogSink>,
    instance_id: String,
}

impl Logger {
    /// `sink: None` logs warn and error records to stderr.
    pub fn new(level: LogLevel, sink: Option<Arc<dyn LogSink>>, instance_id: &str) -> Self {
        Logger {
            level,
            sink: sink.unwrap_or_else(|| Arc::new(StderrSink)),
            instance_id: instance_id.to_string(),
        }
    }

    /// Whether a record at `level` would be delivered (filter before building fields).
    pub fn enabled(&self, level: LogLevel) -> bool {
        level >= self.level && self.level != LogLevel::Silent
    }

    /// Logs `msg` with `fields` (a JSON object; anything else is ignored).
    pub fn log(&self, level: LogLevel, fields: Value, msg: &str) {
        match level {
            LogLevel::Trace => tracing::trace!(instance_id = %self.instance_id, "{msg}"),
            LogLevel::Debug => tracing::debug!(instance_id = %self.instance_id, "{msg}"),
            LogLevel::Info => tracing::info!(instance_id = %self.instance_id, "{msg}"),
            LogLevel::Warn => tracing::warn!(instance_id = %self.instance_id, "{msg}"),
            LogLevel::Error | LogLevel::Silent => {
                tracing::error!(instance_id = %self.instance_id, "{msg}")
            }
        }
        if !self.enabled(level) {
            return;
        }
        let mut map = match fields {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        map.insert("instanceId".into(), self.instance_id.clone().into());
        self.sink.log(level, map, msg.to_string());
    }

    pub fn debug(&self, fields: Value, msg: &str) {
        self.log(LogLevel::Debug, fields, msg)
    }
    pub fn info(&self, fields: Value, msg: &str) {
        self.log(LogLevel::Info, fields, msg)
    }
    pub fn warn(&self, fields: Value, msg: &str) {
        self.log(LogLevel::Warn, fields, msg)
    }
    pub fn error(&self, fields: Value, msg: &str) {
        self.log(LogLevel::Error, fields, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    type Record = (LogLevel, Map<String, Value>, String);

    #[derive(Default)]
    struct Capture(Mutex<Vec<Record>>);
    impl LogSink for Capture {
        fn log(&self, level: LogLevel, fields: Map<String, Value>, msg: String) {
            self.0.lock().unwrap().push((level, fields, msg));
        }
    }

    #[test]
    fn filters_by_level_and_stamps_the_instance() {
        let cap = Arc::new(Capture::default());
        let log = Logger::new(LogLevel::Warn, Some(cap.clone()), "i-1");
        log.info(serde_json::json!({"a": 1}), "hidden");
        log.warn(serde_json::json!({"a": 2}), "shown");
        let got = cap.0.lock().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].2, "shown");
        assert_eq!(got[0].1["instanceId"], "i-1");
        assert_eq!(got[0].1["a"], 2);
    }

    #[test]
    fn silent_drops_everything() {
        let cap = Arc::new(Capture::default());
        let log = Logger::new(LogLevel::Silent, Some(cap.clone()), "i");
        log.error(Value::Null, "x");
        assert!(cap.0.lock().unwrap().is_empty());
    }
}
