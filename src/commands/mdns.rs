//! `rest-server mdns`: answers multicast DNS (RFC 6762) queries for one name
//! (`rest-server.local`, which the board's certificate names) with the
//! board's current IPv4 address, so that `restic -r
//! rest:https://rest-server.local:8000/...` finds the board without the
//! router's lease table. The flashable image runs it.
//!
//! Small on purpose: one blocking loop, one fixed receive buffer, a reply
//! built in a fixed buffer; A and ANY questions for the name are answered,
//! nothing else. The address is looked up per reply (the route towards the
//! asker), so a new DHCP lease needs no restart.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

const MDNS_PORT: u16 = 5353;
const MDNS_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
/// Largest query read; the rest of a longer datagram is cut off (it would
/// only hold more questions or known answers).
const MAX_QUERY_LEN: usize = 1500;
/// An A record's time to live, and the shorter one RFC 6762 asks for in
/// replies to legacy (non-5353) resolvers.
const TTL_S: u32 = 120;
const LEGACY_TTL_S: u32 = 10;
/// DNS names are at most 255 bytes; a query's name longer than ours cannot
/// match and is not read further.
const MAX_NAME_LEN: usize = 255;
/// Compression pointers followed for one name: enough for any honest
/// packet, and no loop.
const MAX_POINTERS: usize = 8;
const TYPE_A: u16 = 1;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
/// Class bits: the question's "unicast response" bit, the record's "cache
/// flush" bit.
const TOP_BIT: u16 = 0x8000;

/// What a query asks of us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Question {
    id: u16,
    /// The asker wants a unicast reply (the QU bit).
    unicast: bool,
}

/// Whether the labels at `at` in `packet` spell `name` (dot-separated,
/// compared without case). Returns the offset after the name in the
/// question itself, and whether it matched; `None` for a malformed name.
fn read_name(packet: &[u8], mut at: usize, name: &str) -> Option<(usize, bool)> {
    let mut end = None;
    let mut pointers = 0;
    let mut rest = name.as_bytes();
    let mut matched = true;
    let mut len = 0;
    loop {
        let label = *packet.get(at)? as usize;
        if label & 0xc0 == 0xc0 {
            pointers += 1;
            if pointers > MAX_POINTERS {
                return None;
            }
            let target = ((label & 0x3f) << 8) | *packet.get(at + 1)? as usize;
            end.get_or_insert(at + 2);
            at = target;
            continue;
        }
        if label & 0xc0 != 0 {
            return None;
        }
        if label == 0 {
            return Some((end.unwrap_or(at + 1), matched && rest.is_empty()));
        }
        len += label + 1;
        if len > MAX_NAME_LEN {
            return None;
        }
        let bytes = packet.get(at + 1..at + 1 + label)?;
        if matched {
            let (head, tail) = match rest.iter().position(|&b| b == b'.') {
                Some(dot) => (&rest[..dot], &rest[dot + 1..]),
                None => (rest, &[][..]),
            };
            matched = head.eq_ignore_ascii_case(bytes) && !head.is_empty();
            rest = tail;
        }
        at += 1 + label;
    }
}

/// The question in `packet` that asks for `name`'s A record, if any.
fn parse_query(packet: &[u8], name: &str) -> Option<Question> {
    let header = packet.get(..12)?;
    let word = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    // A response, or another opcode than a standard query: not for us.
    if word(2) & 0xf800 != 0 {
        return None;
    }
    let mut at = 12;
    for _ in 0..word(4) {
        let (after, matched) = read_name(packet, at, name)?;
        let fields = packet.get(after..after + 4)?;
        let qtype = u16::from_be_bytes([fields[0], fields[1]]);
        let qclass = u16::from_be_bytes([fields[2], fields[3]]);
        at = after + 4;
        if matched && (qtype == TYPE_A || qtype == TYPE_ANY) && qclass & !TOP_BIT == CLASS_IN {
            return Some(Question {
                id: word(0),
                unicast: qclass & TOP_BIT != 0,
            });
        }
    }
    None
}

/// Appends `name` as DNS labels.
fn put_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len().min(63) as u8);
        out.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    out.push(0);
}

/// A response with the A record of `name` (in wire format, [`put_name`]).
/// `legacy`: to a plain DNS resolver (port not 5353), which gets its query's
/// id and question back, a short TTL and no cache-flush bit (RFC 6762
/// section 6.7). Few, whole-slice appends: this is on a size budget.
fn response(out: &mut Vec<u8>, name: &[u8], address: Ipv4Addr, legacy: Option<u16>) {
    out.clear();
    let [i0, i1] = legacy.unwrap_or(0).to_be_bytes();
    let questions = u8::from(legacy.is_some());
    out.extend_from_slice(&[i0, i1, 0x84, 0, 0, questions, 0, 1, 0, 0, 0, 0]);
    if legacy.is_some() {
        out.extend_from_slice(name);
        out.extend_from_slice(&[0, TYPE_A as u8, 0, CLASS_IN as u8]);
    }
    out.extend_from_slice(name);
    let (flush, ttl) = match legacy {
        Some(_) => (0, LEGACY_TTL_S),
        None => ((TOP_BIT >> 8) as u8, TTL_S),
    };
    let [t0, t1, t2, t3] = ttl.to_be_bytes();
    let [a0, a1, a2, a3] = address.octets();
    out.extend_from_slice(&[
        0,
        TYPE_A as u8,
        flush,
        CLASS_IN as u8,
        t0,
        t1,
        t2,
        t3,
        0,
        4,
        a0,
        a1,
        a2,
        a3,
    ]);
}

/// The address this board has towards `peer`: the source address the
/// kernel would pick, so it follows DHCP without being told.
fn address_towards(peer: SocketAddr) -> std::io::Result<Ipv4Addr> {
    let probe = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    probe.connect(peer)?;
    match probe.local_addr()? {
        SocketAddr::V4(a) if !a.ip().is_unspecified() => Ok(*a.ip()),
        _ => Err(std::io::ErrorKind::AddrNotAvailable.into()),
    }
}

/// Announces `name` twice, a second apart (RFC 6762 section 8.3), then
/// answers queries for good.
pub fn run(name: &str) -> std::io::Result<()> {
    let group = SocketAddr::V4(SocketAddrV4::new(MDNS_GROUP, MDNS_PORT));
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, MDNS_PORT))?;
    socket.join_multicast_v4(&MDNS_GROUP, &Ipv4Addr::UNSPECIFIED)?;
    // RFC 6762 section 11: mDNS packets are sent with IP TTL 255.
    socket.set_multicast_ttl_v4(255)?;
    let mut wire = Vec::with_capacity(MAX_NAME_LEN);
    put_name(&mut wire, name);
    let mut out = Vec::with_capacity(2 * wire.len() + 40);
    let address = address_towards(group)?;
    log::info!("mdns: {name} is {address}");
    response(&mut out, &wire, address, None);
    for _ in 0..2 {
        socket.send_to(&out, group)?;
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut buf = [0u8; MAX_QUERY_LEN];
    loop {
        let (n, from) = socket.recv_from(&mut buf)?;
        let Some(question) = parse_query(&buf[..n], name) else {
            continue;
        };
        let Ok(address) = address_towards(from) else {
            continue;
        };
        let legacy = from.port() != MDNS_PORT;
        response(&mut out, &wire, address, legacy.then_some(question.id));
        let to = if legacy || question.unicast {
            from
        } else {
            group
        };
        if let Err(e) = socket.send_to(&out, to) {
            log::warn!("mdns: reply to {from}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "rest-server.local";

    fn query(id: u16, name: &str, qtype: u16, qclass: u16) -> Vec<u8> {
        let mut p = Vec::new();
        for word in [id, 0, 1, 0, 0, 0] {
            p.extend_from_slice(&word.to_be_bytes());
        }
        put_name(&mut p, name);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&qclass.to_be_bytes());
        p
    }

    #[test]
    fn a_and_any_questions_for_the_name_are_answered() {
        let q = |name, qtype, qclass| parse_query(&query(7, name, qtype, qclass), NAME);
        let multicast = Some(Question {
            id: 7,
            unicast: false,
        });
        assert_eq!(q(NAME, TYPE_A, CLASS_IN), multicast);
        assert_eq!(q("REST-Server.Local", TYPE_ANY, CLASS_IN), multicast);
        assert_eq!(
            q(NAME, TYPE_A, CLASS_IN | TOP_BIT),
            Some(Question {
                id: 7,
                unicast: true
            })
        );
        // Another name, a longer or shorter one, AAAA, another class.
        assert_eq!(q("other.local", TYPE_A, CLASS_IN), None);
        assert_eq!(q("rest-server.local.x", TYPE_A, CLASS_IN), None);
        assert_eq!(q("rest-server", TYPE_A, CLASS_IN), None);
        assert_eq!(q("x.rest-server.local", TYPE_A, CLASS_IN), None);
        assert_eq!(q(NAME, 28, CLASS_IN), None);
        assert_eq!(q(NAME, TYPE_A, 3), None);
        // A response is no question.
        let mut answer = query(7, NAME, TYPE_A, CLASS_IN);
        answer[2] = 0x84;
        assert_eq!(parse_query(&answer, NAME), None);
    }

    #[test]
    fn the_second_question_may_point_into_the_first() {
        let mut p = query(0, "other.local", TYPE_A, CLASS_IN);
        p[5] = 2; // two questions
        // "rest-server" then a pointer to "local" at 12 + 6.
        p.push(11);
        p.extend_from_slice(b"rest-server");
        p.extend_from_slice(&[0xc0, 18]);
        p.extend_from_slice(&[0, 1, 0, 1]);
        assert!(parse_query(&p, NAME).is_some());
    }

    #[test]
    fn malformed_queries_are_dropped_without_panic() {
        let good = query(1, NAME, TYPE_A, CLASS_IN);
        // Every truncation.
        for len in 0..good.len() {
            assert_eq!(parse_query(&good[..len], NAME), None, "{len}");
        }
        // A pointer loop, a pointer past the end, a reserved label type.
        let mut p = good[..12].to_vec();
        p.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_query(&p, NAME), None);
        p[12..14].copy_from_slice(&[0xc0, 200]);
        assert_eq!(parse_query(&p, NAME), None);
        p[12] = 0x80;
        assert_eq!(parse_query(&p, NAME), None);
        // A name of 300 bytes in 63-byte labels.
        let long = vec!["a".repeat(63); 5].join(".");
        let mut p = good[..12].to_vec();
        put_name(&mut p, &long);
        p.extend_from_slice(&[0, 1, 0, 1]);
        assert_eq!(parse_query(&p, NAME), None);
        // 65535 questions claimed, one there.
        let mut p = good.clone();
        p[4..6].copy_from_slice(&[0xff, 0xff]);
        assert!(parse_query(&p, NAME).is_some());
        p[16] ^= 0x20; // another name now
        p[17] = b'x';
        assert_eq!(parse_query(&p, NAME), None);
        // Pseudo-random bytes.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..2000 {
            let junk: Vec<u8> = (0..len % 300)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = parse_query(&junk, NAME);
        }
    }

    #[test]
    fn responses_carry_the_address() {
        let mut out = Vec::new();
        let mut wire = Vec::new();
        put_name(&mut wire, NAME);
        let address = Ipv4Addr::new(192, 0, 2, 7);
        response(&mut out, &wire, address, None);
        assert_eq!(&out[..12], &[0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
        let (after, matched) = read_name(&out, 12, NAME).unwrap();
        assert!(matched);
        assert_eq!(&out[after..after + 4], &[0, 1, 0x80, 1]);
        assert_eq!(&out[after + 4..after + 8], &TTL_S.to_be_bytes());
        assert_eq!(&out[after + 8..], &[0, 4, 192, 0, 2, 7]);
        // Legacy: the id and the question back, no cache-flush bit.
        response(&mut out, &wire, address, Some(0x1234));
        assert_eq!(&out[..6], &[0x12, 0x34, 0x84, 0, 0, 1]);
        let (after, _) = read_name(&out, 12, NAME).unwrap();
        let (after, matched) = read_name(&out, after + 4, NAME).unwrap();
        assert!(matched);
        assert_eq!(&out[after..after + 4], &[0, 1, 0, 1]);
        assert_eq!(&out[after + 4..after + 8], &LEGACY_TTL_S.to_be_bytes());
    }
}
