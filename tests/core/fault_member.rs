//! A network member with fault points, for the `faults` core tests: started as a child
//! process (and SIGKILLed there). Built only with the test-only `fault-points` feature.
//!
//! Usage: `fault-member <redis url> <key prefix> <instance id>`; with
//! `PERSEUS_FAULT_PAUSE_AFTER_MARK_DEAD=<instance id>` its sweeper pauses for good after its
//! first winning mark-dead. Prints `running` once started, then runs until killed.

use std::sync::Arc;

use perseus_native::core::config::{Config, PublicIpOption, RawOptions};
use perseus_native::core::events::NoEvents;
use perseus_native::core::network::Network;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, prefix, id] = &args[..] else {
        eprintln!("usage: fault-member <redis url> <key prefix> <instance id>");
        std::process::exit(2);
    };
    let o = RawOptions {
        redis_url: Some(url.clone()),
        key_prefix: Some(prefix.clone()),
        exchange_id: Some(7.0),
        exchange_name: Some("coinbase".into()),
        version: Some("1.2.3".into()),
        hostname: Some("fault-host".into()),
        instance_id: Some(id.clone()),
        public_ip: Some(PublicIpOption::Disabled),
        heartbeat_interval_ms: Some(100.0),
        heartbeat_ttl_ms: Some(400.0),
        connect_timeout_ms: Some(1000.0),
        command_timeout_ms: Some(1000.0),
        dead_instance_ttl_ms: Some(60_000.0),
        log_level: Some("warn".into()),
        ..Default::default()
    };
    let cfg = Config::from_options(o, None).expect("valid options");
    let net = Network::new(cfg, Arc::new(NoEvents), None);
    net.start().await.expect("starts");
    println!("running");
    std::future::pending::<()>().await;
}
