//! Where the doors listen: the listen settings parsed into addresses, bound,
//! and each bound address logged on its own line ("amqp listening on ADDR";
//! scripts and tests read it). Serving what is accepted is the accept
//! layer's job (`gw-listen`).
//!
//! A listen setting is `off`, or a comma-separated list of `IP:PORT`
//! addresses (`127.0.0.1:5672,[::1]:5672`; the TOML file may also give an
//! array). Port 0 picks a free port, per entry. The default is both
//! loopbacks on the door's usual port, so clients that resolve `localhost`
//! to `::1` first (Node ≥ 17, for one) connect on a fresh install; on a host
//! without IPv6 the `[::1]` of the default is left out with one notice, while
//! a `[::1]` the operator asked for is an error like any other address.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::Deserialize;
use tokio::net::TcpListener;

use crate::app::StartError;
use crate::config::ConfigError;

/// One address a door listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr {
    /// The address (port 0: any free port).
    pub addr: SocketAddr,
    /// The default's IPv6 loopback: left out, with a notice, on a host
    /// without IPv6. Addresses the operator gives are never optional.
    pub optional: bool,
}

impl ListenAddr {
    /// An address the operator asked for.
    pub fn required(addr: SocketAddr) -> Self {
        ListenAddr {
            addr,
            optional: false,
        }
    }
}

/// A listen setting as the TOML file may write it: one string (possibly a
/// comma-separated list) or an array of strings.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum ListenSetting {
    One(String),
    Many(Vec<String>),
}

/// The default: `127.0.0.1:PORT` and, where the host has IPv6, `[::1]:PORT`.
pub fn default_addresses(port: u16) -> Vec<ListenAddr> {
    vec![
        ListenAddr::required(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
        ListenAddr {
            addr: SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
            optional: true,
        },
    ]
}

/// Parses a listen setting; empty means the door is off. `key` names the
/// setting in errors ("amqp listen address"), and an error names the entry.
pub(crate) fn parse(
    key: &'static str,
    setting: &ListenSetting,
    usual_port: u16,
) -> Result<Vec<ListenAddr>, ConfigError> {
    let entries: Vec<&str> = match setting {
        ListenSetting::One(text) if matches!(text.trim(), "off" | "") => return Ok(Vec::new()),
        ListenSetting::One(text) => text.split(',').map(str::trim).collect(),
        ListenSetting::Many(list) if list.is_empty() => {
            return Err(invalid(
                key,
                "[]",
                "an empty list; write \"off\" to turn the door off",
            ));
        }
        ListenSetting::Many(list) => list.iter().map(|s| s.trim()).collect(),
    };
    let mut addrs: Vec<ListenAddr> = Vec::with_capacity(entries.len());
    for entry in entries {
        if entry.is_empty() {
            return Err(invalid(key, entry, "an empty entry in the list"));
        }
        if entry == "off" {
            return Err(invalid(key, entry, "\"off\" stands alone, not in a list"));
        }
        let addr: SocketAddr = entry.parse().map_err(|e| {
            invalid(
                key,
                entry,
                &format!(
                    "{e} (expected IP:PORT, e.g. 127.0.0.1:{usual_port} or [::1]:{usual_port})"
                ),
            )
        })?;
        if addr.port() != 0 && addrs.iter().any(|a| a.addr == addr) {
            return Err(invalid(key, entry, "listed twice"));
        }
        addrs.push(ListenAddr::required(addr));
    }
    Ok(addrs)
}

fn invalid(key: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

/// A door's bound listeners, in the order configured.
pub(crate) struct Bound {
    pub listeners: Vec<TcpListener>,
    pub addresses: Vec<SocketAddr>,
}

/// Binds every address of one door and logs each. Optional addresses the
/// host cannot bind for want of IPv6 are left out and added to `skipped`,
/// for one notice once every door is bound ([`notice_skipped`]).
pub(crate) async fn bind(
    door: &'static str,
    addrs: &[ListenAddr],
    skipped: &mut Vec<(SocketAddr, io::Error)>,
) -> Result<Bound, StartError> {
    let mut bound = Bound {
        listeners: Vec::with_capacity(addrs.len()),
        addresses: Vec::with_capacity(addrs.len()),
    };
    for wanted in addrs {
        let fail = |source| StartError::Bind {
            door,
            address: wanted.addr,
            source,
        };
        let listener = match TcpListener::bind(wanted.addr).await {
            Ok(l) => l,
            Err(e) if skip_without_ipv6(wanted, &e) => {
                skipped.push((wanted.addr, e));
                continue;
            }
            Err(e) => return Err(fail(e)),
        };
        let local = listener.local_addr().map_err(fail)?;
        tracing::info!(door, address = %local, "{door} listening on {local}");
        bound.listeners.push(listener);
        bound.addresses.push(local);
    }
    Ok(bound)
}

/// Whether a failed bind is the host lacking IPv6 for an optional address:
/// the kernel has no IPv6 (EAFNOSUPPORT) or `::1` is not configured
/// (EADDRNOTAVAIL, e.g. `disable_ipv6` on `lo`). Anything else, a port in
/// use included, is an error for every address.
pub(crate) fn skip_without_ipv6(addr: &ListenAddr, error: &io::Error) -> bool {
    addr.optional
        && addr.addr.is_ipv6()
        && (error.kind() == io::ErrorKind::AddrNotAvailable
            || error.raw_os_error() == Some(EAFNOSUPPORT))
}

/// "Address family not supported by protocol".
#[cfg(target_os = "linux")]
const EAFNOSUPPORT: i32 = 97;
/// "Address family not supported by protocol family" (macOS and the BSDs).
#[cfg(not(target_os = "linux"))]
const EAFNOSUPPORT: i32 = 47;

/// The one line saying that the default's IPv6 loopback was left out.
pub(crate) fn notice_skipped(skipped: &[(SocketAddr, io::Error)]) {
    if let Some((_, cause)) = skipped.first() {
        let ports: Vec<String> = skipped.iter().map(|(a, _)| a.port().to_string()).collect();
        tracing::info!(
            cause = %cause,
            "IPv6 is not available on this host ({cause}): not listening on [::1] (ports {}); IPv4 loopback only",
            ports.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn one(s: &str) -> ListenSetting {
        ListenSetting::One(s.into())
    }

    fn addrs(list: &[ListenAddr]) -> Vec<String> {
        list.iter().map(|a| a.addr.to_string()).collect()
    }

    #[test]
    fn lists_and_off() {
        let got = parse(
            "amqp listen address",
            &one("127.0.0.1:5672, [::1]:5673"),
            5672,
        )
        .unwrap();
        assert_eq!(addrs(&got), ["127.0.0.1:5672", "[::1]:5673"]);
        assert!(got.iter().all(|a| !a.optional));
        let many = ListenSetting::Many(vec!["0.0.0.0:1".into(), "[::]:2".into()]);
        assert_eq!(
            addrs(&parse("k", &many, 1).unwrap()),
            ["0.0.0.0:1", "[::]:2"]
        );
        assert!(parse("k", &one("off"), 1).unwrap().is_empty());
        assert!(parse("k", &one(" off "), 1).unwrap().is_empty());
        assert!(parse("k", &one(""), 1).unwrap().is_empty());
        // Port 0 may repeat: each entry gets its own free port.
        assert_eq!(
            parse("k", &one("127.0.0.1:0,127.0.0.1:0"), 1)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn a_bad_entry_is_named() {
        for (text, entry, why) in [
            (
                "127.0.0.1:5672,localhost:abc",
                "localhost:abc",
                "expected IP:PORT",
            ),
            ("127.0.0.1:5672,,[::1]:5672", "", "empty entry"),
            ("127.0.0.1:5672,off", "off", "stands alone"),
            ("::1:5672", "::1:5672", "[::1]:5672"),
            ("127.0.0.1:5672,127.0.0.1:5672", "127.0.0.1:5672", "twice"),
        ] {
            let e = parse("amqp listen address", &one(text), 5672)
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("'{entry}'")), "{text}: {e}");
            assert!(e.contains(why), "{text}: {e}");
            assert!(e.contains("amqp listen address"), "{e}");
        }
        let e = parse("k", &ListenSetting::Many(vec![]), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"off\""), "{e}");
    }

    #[test]
    fn the_default_is_both_loopbacks_and_only_ipv6_is_optional() {
        let d = default_addresses(1883);
        assert_eq!(addrs(&d), ["127.0.0.1:1883", "[::1]:1883"]);
        assert_eq!(
            d.iter().map(|a| a.optional).collect::<Vec<_>>(),
            [false, true]
        );
    }

    #[test]
    fn only_the_defaults_ipv6_loopback_is_skipped_and_only_for_want_of_ipv6() {
        let default_v6 = default_addresses(5672)[1];
        let default_v4 = default_addresses(5672)[0];
        let asked_v6 = ListenAddr::required(default_v6.addr);
        let not_configured = io::Error::from(io::ErrorKind::AddrNotAvailable);
        let no_ipv6 = io::Error::from_raw_os_error(EAFNOSUPPORT);
        let in_use = io::Error::from(io::ErrorKind::AddrInUse);
        assert!(skip_without_ipv6(&default_v6, &not_configured));
        assert!(skip_without_ipv6(&default_v6, &no_ipv6));
        assert!(!skip_without_ipv6(&default_v6, &in_use));
        assert!(!skip_without_ipv6(&asked_v6, &not_configured));
        assert!(!skip_without_ipv6(&asked_v6, &no_ipv6));
        assert!(!skip_without_ipv6(&default_v4, &not_configured));
    }

    #[tokio::test]
    async fn each_entry_is_bound_and_port_zero_gets_its_own_port() {
        let list = parse("k", &one("127.0.0.1:0,127.0.0.1:0"), 1).unwrap();
        let mut skipped = Vec::new();
        let bound = bind("test", &list, &mut skipped).await.unwrap();
        assert_eq!(bound.listeners.len(), 2);
        assert_ne!(bound.addresses[0].port(), bound.addresses[1].port());
        assert!(bound.addresses.iter().all(|a| a.port() != 0));
        // A port in use is an error, naming the door and the address.
        let taken = ListenAddr::required(bound.addresses[0]);
        let Err(e) = bind("test", &[taken], &mut skipped).await else {
            panic!("bound a port in use");
        };
        assert!(
            e.to_string().contains(&bound.addresses[0].to_string()),
            "{e}"
        );
        assert!(skipped.is_empty());
    }
}
