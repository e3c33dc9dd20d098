//! This host's clock, in the two forms the core writes: ms epochs and ISO 8601 text.

/// Milliseconds since the Unix epoch by this host's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// ISO 8601 with milliseconds, UTC (the seed's `ts`, `registeredAt`, `lastStateChange`).
pub fn iso_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
