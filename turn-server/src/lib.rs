//! Switchboard turn-server: a STUN/TURN relay (issue 3). So far the wire codec and the sans-IO
//! server core exist; the socket driver, config and ops endpoints are still to come.
//!
//! # Layout
//! - `core/`: the sans-IO TURN server ([`core::Server`]): allocations, permissions, channels,
//!   auth (REST credentials via `common::turn_auth`, static users, stateless nonces), peer filter,
//!   quotas, bandwidth caps, timers. Bytes, addresses and `now` in; actions out.
//! - `proto/`: sans-IO STUN/TURN codec.
//!   - `message.rs`: header, class/method, lazy borrowing [`proto::Message`] decoding.
//!   - `builder.rs`: [`proto::MessageBuilder`], encoding into a reusable `Vec<u8>`.
//!   - `attr_type.rs`: [`proto::AttrType`] numbers and which are known (for 420 answers).
//!   - `attributes.rs`: typed [`proto::Attribute`] decode/encode, XOR addresses.
//!   - `integrity.rs`: long-term key, MESSAGE-INTEGRITY (HMAC-SHA1), FINGERPRINT (CRC-32).
//!   - `channel_data.rs`: ChannelData frames and [`proto::peek_frame_len`] for TCP/TLS framing.
//!   - `error.rs`: [`proto::DecodeError`] and [`proto::EncodeError`].
//! - `main.rs`: placeholder entry point.

pub mod core;
pub mod proto;
