//! Blocks of fixed ports for the test stores whose daemons cannot bind port
//! 0 and say what they got (SeaweedFS, Ceph): a base from this process's id
//! and a counter, below the kernel's ephemeral range (32768 and up). Blocks
//! handed out in one test run never overlap, and a block with a port already
//! taken (another test run's store, say) is passed over.

use std::sync::atomic::{AtomicU16, Ordering};

/// Ports of one block: base + 0..6 and base + 10000..10006 (SeaweedFS puts
/// the gRPC port of each of its HTTP ports 10000 above it).
pub const PORTS_PER_BLOCK: u16 = 6;

/// The base of a free block of ports: base + 0..6 and base + 10000..10006
/// were free when looked at.
pub fn next_base() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // 10000..=21999 leaves the upper ports (base + 10000) below 32768.
    let slots = 12000 / PORTS_PER_BLOCK;
    let start = (std::process::id() % u32::from(slots)) as u16;
    for _ in 0..slots {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = 10000 + ((start + n) % slots) * PORTS_PER_BLOCK;
        let free = (0..PORTS_PER_BLOCK)
            .flat_map(|i| [base + i, base + 10000 + i])
            .all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free block of {PORTS_PER_BLOCK} ports for a test store");
}
