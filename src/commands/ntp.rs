//! `rest-server ntp`: keeps the clock of a board without a real-time clock (a
//! Raspberry Pi boots in 1970) set from SNTP servers (RFC 4330), so that the
//! log, the metrics and the status page tell the right time. The flashable
//! image runs it; Debian's busybox has no `ntpd`.
//!
//! One blocking loop on a plain UDP socket, no runtime: a request, a reply
//! checked against it, the clock stepped when it is off by more than
//! `STEP_THRESHOLD_NS`, and each correction logged.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from NTP's epoch (1900) to Unix's (1970).
const NTP_TO_UNIX_S: u64 = 2_208_988_800;
/// An SNTP packet without extensions.
const PACKET_LEN: usize = 48;
/// How long a server has to answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// After a round in which no server answered.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Smaller offsets are left alone: a step backwards reorders log lines,
/// and a Pi's crystal drifts far less than this between two syncs.
const STEP_THRESHOLD_NS: i128 = 250_000_000;
const NS_PER_S: i128 = 1_000_000_000;

/// Why a reply was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadReply {
    Short,
    /// Not mode 4 (server), or a kiss-o'-death / unsynchronised server.
    NotServer,
    /// Does not answer our request (origin timestamp differs).
    NotOurs,
}

/// `t` as an NTP timestamp: seconds since 1900 in the high 32 bits (wrapping
/// in 2036, era 1), the fraction in the low ones.
fn to_ntp(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = (d.as_secs() + NTP_TO_UNIX_S) & 0xffff_ffff;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// An NTP timestamp as nanoseconds since 1970. Seconds with the top bit
/// clear are taken as era 1 (from 2036 on), as RFC 4330 says.
fn ntp_to_unix_ns(ts: u64) -> i128 {
    let mut secs = i128::from(ts >> 32);
    if secs < 0x8000_0000 {
        secs += 1 << 32;
    }
    let frac = (i128::from(ts & 0xffff_ffff) * NS_PER_S) >> 32;
    (secs - i128::from(NTP_TO_UNIX_S)) * NS_PER_S + frac
}

fn unix_ns(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// A client request (version 4, mode 3) carrying `transmit`.
fn request(transmit: u64) -> [u8; PACKET_LEN] {
    let mut packet = [0u8; PACKET_LEN];
    packet[0] = 0x23;
    packet[40..48].copy_from_slice(&transmit.to_be_bytes());
    packet
}

/// The server's receive and transmit timestamps from `reply`, if it answers
/// the request that carried `sent`.
fn parse_reply(reply: &[u8], sent: u64) -> Result<(u64, u64), BadReply> {
    if reply.len() < PACKET_LEN {
        return Err(BadReply::Short);
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&reply[at..at + 8]);
        u64::from_be_bytes(b)
    };
    let (leap, mode, stratum) = (reply[0] >> 6, reply[0] & 7, reply[1]);
    let transmit = word(40);
    if mode != 4 || leap == 3 || !(1..=15).contains(&stratum) || transmit == 0 {
        return Err(BadReply::NotServer);
    }
    if word(24) != sent {
        return Err(BadReply::NotOurs);
    }
    Ok((word(32), transmit))
}

/// How far the local clock is behind the server's, in nanoseconds, from the
/// four timestamps of one exchange (sent, received by the server, sent by
/// the server, received back).
fn offset_ns(t1: i128, t2: i128, t3: i128, t4: i128) -> i128 {
    ((t2 - t1) + (t3 - t4)) / 2
}

/// `host` or `host:port` (default port 123).
fn resolve(server: &str) -> std::io::Result<SocketAddr> {
    let with_port;
    let name = match server.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() && !server.ends_with(']') => server,
        _ => {
            with_port = format!("{server}:123");
            &with_port
        }
    };
    name.to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
}

/// One exchange with `server`: the local clock's offset in nanoseconds.
fn query(server: &str) -> std::io::Result<i128> {
    let addr = resolve(server)?;
    let bind: SocketAddr = match addr {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind)?;
    socket.connect(addr)?;
    socket.set_read_timeout(Some(REPLY_TIMEOUT))?;
    let before = SystemTime::now();
    let sent = to_ntp(before);
    socket.send(&request(sent))?;
    let mut buf = [0u8; PACKET_LEN];
    // Stray or stale datagrams are skipped until the timeout.
    loop {
        let n = socket.recv(&mut buf)?;
        let after = SystemTime::now();
        if let Ok((received, transmit)) = parse_reply(&buf[..n], sent) {
            return Ok(offset_ns(
                unix_ns(before),
                ntp_to_unix_ns(received),
                ntp_to_unix_ns(transmit),
                unix_ns(after),
            ));
        }
    }
}

/// Steps the clock by `offset` nanoseconds.
fn step(offset: i128) -> nix::Result<()> {
    use nix::time::{ClockId, clock_gettime, clock_settime};
    let now = clock_gettime(ClockId::CLOCK_REALTIME)?;
    let ns = i128::from(now.tv_sec()) * NS_PER_S + i128::from(now.tv_nsec()) + offset;
    let to =
        nix::sys::time::TimeSpec::new(ns.div_euclid(NS_PER_S) as _, ns.rem_euclid(NS_PER_S) as _);
    clock_settime(ClockId::CLOCK_REALTIME, to)
}

/// Syncs from the first of `servers` that answers, every `interval`, for
/// good; `RETRY_AFTER` when none did.
pub fn run(servers: &[String], interval: Duration) -> ! {
    let mut failing = false;
    loop {
        let mut synced = false;
        for server in servers {
            match query(server) {
                Ok(offset) => {
                    if offset.abs() > STEP_THRESHOLD_NS {
                        let secs = offset as f64 / NS_PER_S as f64;
                        match step(offset) {
                            Ok(()) => log::info!("ntp: clock corrected by {secs:+.3} s ({server})"),
                            Err(e) => log::error!("ntp: cannot set the clock: {e}"),
                        }
                    }
                    synced = true;
                    break;
                }
                Err(e) if !failing => log::warn!("ntp: {server}: {e}"),
                Err(_) => {}
            }
        }
        failing = !synced;
        std::thread::sleep(if synced { interval } else { RETRY_AFTER });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(byte0: u8, stratum: u8, origin: u64, received: u64, transmit: u64) -> Vec<u8> {
        let mut p = vec![0u8; PACKET_LEN];
        p[0] = byte0;
        p[1] = stratum;
        p[24..32].copy_from_slice(&origin.to_be_bytes());
        p[32..40].copy_from_slice(&received.to_be_bytes());
        p[40..48].copy_from_slice(&transmit.to_be_bytes());
        p
    }

    #[test]
    fn timestamps_convert_both_ways_across_2036() {
        for unix in [
            0u64,
            1_000_000_000,
            2_085_978_495,
            2_085_978_497,
            4_000_000_000,
        ] {
            let t = UNIX_EPOCH + Duration::new(unix, 500_000_000);
            let back = ntp_to_unix_ns(to_ntp(t));
            assert!((back - unix_ns(t)).abs() < 2, "{unix}");
        }
    }

    #[test]
    fn offset_is_the_server_clock_minus_ours() {
        // Our clock 100 s behind, 2 s round trip, 1 s of it each way.
        let s = NS_PER_S;
        assert_eq!(offset_ns(0, 101 * s, 101 * s, 2 * s), 100 * s);
        assert_eq!(offset_ns(100 * s, s, s, 102 * s), -100 * s);
    }

    #[test]
    fn replies_are_checked_against_the_request() {
        let sent = 0x1234_5678_9abc_def0;
        let ok = reply(0x24, 2, sent, 7, 9);
        assert_eq!(parse_reply(&ok, sent), Ok((7, 9)));
        assert_eq!(parse_reply(&ok[..47], sent), Err(BadReply::Short));
        assert_eq!(parse_reply(&[], sent), Err(BadReply::Short));
        assert_eq!(parse_reply(&ok, sent + 1), Err(BadReply::NotOurs));
        // A client packet, an unsynchronised server, a kiss-o'-death
        // (stratum 0), no transmit time.
        assert_eq!(
            parse_reply(&reply(0x23, 2, sent, 7, 9), sent),
            Err(BadReply::NotServer)
        );
        assert_eq!(
            parse_reply(&reply(0xe4, 2, sent, 7, 9), sent),
            Err(BadReply::NotServer)
        );
        assert_eq!(
            parse_reply(&reply(0x24, 0, sent, 7, 9), sent),
            Err(BadReply::NotServer)
        );
        assert_eq!(
            parse_reply(&reply(0x24, 2, sent, 7, 0), sent),
            Err(BadReply::NotServer)
        );
        // Longer packets (extension fields, a MAC) are fine.
        let mut long = ok.clone();
        long.extend_from_slice(&[0u8; 20]);
        assert_eq!(parse_reply(&long, sent), Ok((7, 9)));
        // Any garbage: no panic.
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = parse_reply(&junk, sent);
        }
    }

    #[test]
    fn requests_are_client_packets_with_our_time() {
        let p = request(42);
        assert_eq!(p[0], 0x23);
        assert_eq!(&p[40..48], &42u64.to_be_bytes());
    }

    #[test]
    fn servers_get_port_123_unless_they_name_one() {
        assert_eq!(
            resolve("127.0.0.1").unwrap(),
            "127.0.0.1:123".parse().unwrap()
        );
        assert_eq!(
            resolve("127.0.0.1:5123").unwrap(),
            "127.0.0.1:5123".parse().unwrap()
        );
        assert_eq!(
            resolve("[::1]:5123").unwrap(),
            "[::1]:5123".parse().unwrap()
        );
        // A bare IPv6 address needs brackets and a port.
        assert!(resolve("::1").is_err());
    }
}
