//! Any bytes through the codec: decoding, attribute iteration, framing, integrity checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turn_server::proto::{ChannelData, Message, Packet, peek_frame_len};

fuzz_target!(|data: &[u8]| {
    let _ = peek_frame_len(data);
    let _ = Packet::decode(data);
    let _ = ChannelData::decode(data);
    if let Ok(msg) = Message::decode(data) {
        for attr in msg.attributes() {
            let _ = attr;
        }
        let _ = msg.unknown_comprehension_required().count();
        let _ = msg.verify_integrity(&[0u8; 16]);
    }
});
