//! Any bytes into the sans-IO server, from a client and from a peer, with an allocation open.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use turn_server::core::{ClientAddr, Config, Server, Transport};

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let mut server = Server::new(Config::default(), now, 1_800_000_000);
    let client = ClientAddr {
        transport: Transport::Udp,
        remote: SocketAddr::from(([192, 0, 2, 1], 5000)),
        local: SocketAddr::from(([192, 0, 2, 2], 3478)),
    };
    for (i, chunk) in data.split(|b| *b == 0xFF).enumerate() {
        let t = now + Duration::from_millis(i as u64 * 100);
        let _ = server.handle_client(t, client, chunk);
        let _ = server.handle_peer(
            t,
            SocketAddr::from(([192, 0, 2, 2], 50000)),
            SocketAddr::from(([198, 51, 100, 1], 9)),
            chunk,
        );
        server.handle_timeout(t);
        while server.poll_transmit().is_some() {}
        while let Some(command) = server.poll_command() {
            if let turn_server::core::Command::BindRelay { id, .. } = command {
                server.relay_bound(t, id, Some(SocketAddr::from(([192, 0, 2, 2], 50000))));
            }
        }
    }
});
