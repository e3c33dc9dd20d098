//! Unit tests of the store's labels.

use super::*;

#[test]
fn labels_name_the_command_and_its_key_only() {
    let mut x = Command::write_once("XADD", "perseus:activity");
    x.arg("*").arg("secret-field").arg("v");
    assert_eq!(x.label(), "XADD perseus:activity");
    let mut r = Command::with_args(Kind::Read, "XREAD", Some("p:activity"));
    r.arg("COUNT")
        .arg(5)
        .arg("BLOCK")
        .arg(10)
        .arg("STREAMS")
        .arg("p:activity")
        .arg("0-0");
    assert_eq!(r.label(), "XREAD p:activity");
    assert_eq!(Command::with_args(Kind::Read, "PING", None).label(), "PING");
    let mut h = Command::read("HMGET", "p:instance:a");
    h.arg("state").arg("publicIp");
    assert_eq!(h.label(), "HMGET p:instance:a");
    assert_eq!(h.kind(), Kind::Read);
}
