//! The sans-IO TURN server (RFC 8656 over RFC 8489): bytes, addresses and `now` in; responses,
//! relay commands and forwarding decisions out. No sockets, no clock reads, no tasks.
//!
//! The driver feeds [`Server::handle_client`] (packets from clients), [`Server::handle_peer`]
//! (packets arriving on relay sockets), [`Server::relay_bound`] (answers to
//! [`Command::BindRelay`]) and [`Server::handle_timeout`] (at [`Server::poll_timeout`]), and drains
//! [`Server::poll_transmit`] and [`Server::poll_command`]. The hot paths (ChannelData both ways)
//! return their decision directly and never allocate: the driver sends the payload in place.

pub mod allocation;
pub mod auth;
pub mod filter;
pub mod stats;

use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};

// Fx hashing: these maps are on the per-packet path; their keys are our own ids and ports or
// addresses of authenticated clients, and per-allocation maps are bounded.
use rustc_hash::FxHashMap as HashMap;

use self::allocation::Allocation;
use self::auth::{AuthFailure, Credentials, Key, Nonces};
use self::filter::PeerFilter;
use self::stats::Stats;
use crate::proto::{
    AddressFamily, AttrType, AttrTypeList, Attribute, ChannelData, Class, ErrorCode, Message,
    MessageBuilder, Method, PROTOCOL_UDP, TransactionId, channel_data_header,
};

/// How a client reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// A client's 5-tuple: transport, its address and the local address it reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr {
    pub transport: Transport,
    pub remote: SocketAddr,
    pub local: SocketAddr,
}

/// The public address to advertise for relays bound on a private one (cloud NAT).
#[derive(Debug, Clone, Copy)]
pub struct ExternalIp {
    pub public: IpAddr,
    /// Only relays bound on this address are mapped; `None` maps every relay of the family.
    pub private: Option<IpAddr>,
}

/// Everything the core decides with.
#[derive(Debug, Clone)]
pub struct Config {
    pub realm: String,
    pub software: String,
    pub credentials: Credentials,
    pub nonce_secret: [u8; 32],
    pub nonce_lifetime: Duration,
    pub default_lifetime: Duration,
    pub max_lifetime: Duration,
    pub filter: PeerFilter,
    pub max_allocations: usize,
    pub max_allocations_per_user: usize,
    pub max_allocations_per_ip: usize,
    /// Relay bandwidth per allocation and direction, bytes per second.
    pub bandwidth: Option<u64>,
    pub external_ip: Option<ExternalIp>,
    /// Whether IPv6 relays can be bound (REQUESTED-ADDRESS-FAMILY IPv6).
    pub ipv6_relays: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            realm: "switchboard".into(),
            software: concat!("switchboard-turn/", env!("CARGO_PKG_VERSION")).into(),
            credentials: Credentials::default(),
            nonce_secret: [0; 32],
            nonce_lifetime: Duration::from_secs(600),
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            filter: PeerFilter::default(),
            max_allocations: 10_000,
            max_allocations_per_user: 100,
            max_allocations_per_ip: 100,
            bandwidth: None,
            external_ip: None,
            ipv6_relays: true,
        }
    }
}

/// A message for a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: ClientAddr,
    pub data: Vec<u8>,
}

/// Work for the driver outside the request/response flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Bind a relay UDP socket (IPv6 if `ipv6`, on an even port if `even_port`), then call
    /// [`Server::relay_bound`] with `id`.
    BindRelay {
        id: u64,
        client: ClientAddr,
        ipv6: bool,
        even_port: bool,
    },
    /// The allocation ended: close its relay socket.
    ReleaseRelay { relay: SocketAddr },
}

/// What to do with a client packet beyond the queued responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAction {
    Done,
    /// Send `packet[data]` from the relay socket `relay` to `peer`.
    ToPeer {
        relay: SocketAddr,
        peer: SocketAddr,
        data: Range<usize>,
    },
}

/// What to do with a packet a peer sent to a relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAction {
    Drop,
    /// Send `header` followed by the payload (padded to 4 bytes on TCP/TLS) to `to`.
    ChannelData {
        to: ClientAddr,
        header: [u8; 4],
    },
    /// A Data indication was queued on [`Server::poll_transmit`].
    Queued,
}

struct Pending {
    client: ClientAddr,
    transaction: TransactionId,
    username: String,
    key: Key,
    lifetime: Duration,
}

/// The TURN server state of one worker.
pub struct Server {
    config: Config,
    nonces: Nonces,
    base: (Instant, u64),
    allocations: HashMap<u64, Allocation>,
    by_client: HashMap<ClientAddr, u64>,
    by_relay: HashMap<SocketAddr, u64>,
    timers: BTreeSet<(Instant, u64)>,
    timer_of: HashMap<u64, Instant>,
    pending: HashMap<u64, Pending>,
    per_user: HashMap<String, usize>,
    per_ip: HashMap<IpAddr, usize>,
    next_id: u64,
    transmits: VecDeque<Transmit>,
    commands: VecDeque<Command>,
    draining: bool,
    stats: Stats,
}

/// An error answer in the making.
struct Refusal {
    code: ErrorCode<'static>,
    key: Option<Key>,
}

impl Refusal {
    fn new(code: ErrorCode<'static>, key: Option<Key>) -> Self {
        Self { code, key }
    }
}

impl Server {
    /// A server whose clock reads `now_unix` (wall seconds) at `now`; all later times are derived.
    pub fn new(config: Config, now: Instant, now_unix: u64) -> Self {
        let nonces = Nonces::new(config.nonce_secret, config.nonce_lifetime.as_secs());
        Self {
            config,
            nonces,
            base: (now, now_unix),
            allocations: HashMap::default(),
            by_client: HashMap::default(),
            by_relay: HashMap::default(),
            timers: BTreeSet::new(),
            timer_of: HashMap::default(),
            pending: HashMap::default(),
            per_user: HashMap::default(),
            per_ip: HashMap::default(),
            next_id: 1,
            transmits: VecDeque::new(),
            commands: VecDeque::new(),
            draining: false,
            stats: Stats::default(),
        }
    }

    /// Handles one packet (a STUN message or a ChannelData frame) from a client.
    pub fn handle_client(
        &mut self,
        now: Instant,
        client: ClientAddr,
        packet: &[u8],
    ) -> ClientAction {
        if packet.first().is_some_and(|b| b & 0xC0 == 0x40) {
            return self.client_channel_data(now, client, packet);
        }
        let Ok(msg) = Message::decode(packet) else {
            self.stats.malformed += 1;
            return ClientAction::Done;
        };
        match msg.class() {
            Class::Request => self.request(now, client, &msg),
            Class::Indication if msg.method() == Method::SEND => {
                return self.send_indication(now, client, &msg, packet);
            }
            // Responses, and indications other than Send, are not for a server.
            _ => {}
        }
        ClientAction::Done
    }

    /// Handles a packet `peer` sent to the relay socket bound at `relay`.
    pub fn handle_peer(
        &mut self,
        now: Instant,
        relay: SocketAddr,
        peer: SocketAddr,
        payload: &[u8],
    ) -> PeerAction {
        let Some(alloc) = self
            .by_relay
            .get(&relay)
            .and_then(|id| self.allocations.get_mut(id))
        else {
            return PeerAction::Drop;
        };
        if !alloc.has_permission(peer.ip(), now) {
            return PeerAction::Drop;
        }
        if !alloc.spend(payload.len(), now) {
            self.stats.bandwidth_drops += 1;
            return PeerAction::Drop;
        }
        let to = alloc.client;
        let channel = alloc
            .channel_for(peer)
            .filter(|&number| alloc.channel_peer(number, now) == Some(peer));
        self.stats.packets_to_client += 1;
        self.stats.bytes_to_client += payload.len() as u64;
        if let Some(header) = channel.and_then(|number| channel_data_header(number, payload.len()))
        {
            return PeerAction::ChannelData { to, header };
        }
        let transaction = self.fresh_transaction();
        let mut data = Vec::with_capacity(payload.len() + 48);
        let mut b = MessageBuilder::new(&mut data, Class::Indication, Method::DATA, transaction);
        b.add(&Attribute::XorPeerAddress(peer))
            .add(&Attribute::Data(payload));
        if b.finish().is_err() {
            return PeerAction::Drop;
        }
        self.transmits.push_back(Transmit { to, data });
        PeerAction::Queued
    }

    /// The driver's answer to [`Command::BindRelay`]: the bound address, or `None` if it failed.
    pub fn relay_bound(&mut self, now: Instant, id: u64, relay: Option<SocketAddr>) {
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        let Some(relay) = relay else {
            self.release_quota(&p.username, p.client.remote.ip());
            let refusal = Refusal::new(ErrorCode::INSUFFICIENT_CAPACITY, Some(p.key));
            self.refuse(now, p.client, Method::ALLOCATE, p.transaction, refusal);
            return;
        };
        let advertised = self.advertised(relay);
        let lifetime = p.lifetime;
        let mut alloc = Allocation::new(
            p.client,
            relay,
            p.username,
            p.key,
            now + lifetime,
            p.transaction,
            self.config.bandwidth,
            now,
        );
        let mut out = Vec::with_capacity(128);
        let mut b = MessageBuilder::new(&mut out, Class::Success, Method::ALLOCATE, p.transaction);
        b.add(&Attribute::XorRelayedAddress(advertised))
            .add(&Attribute::Lifetime(lifetime.as_secs() as u32))
            .add(&Attribute::XorMappedAddress(p.client.remote))
            .add(&Attribute::Software(&self.config.software))
            .message_integrity(&alloc.key)
            .fingerprint();
        if b.finish().is_ok() {
            alloc.created_response.clone_from(&out);
            self.transmits.push_back(Transmit {
                to: p.client,
                data: out,
            });
        }
        let id = self.next_id();
        self.by_client.insert(p.client, id);
        self.by_relay.insert(relay, id);
        let deadline = alloc.next_deadline();
        self.allocations.insert(id, alloc);
        self.schedule(id, deadline);
        self.stats.allocations_created += 1;
    }

    /// Expires whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.timers.first() {
            if deadline > now {
                break;
            }
            self.timers.pop_first();
            self.timer_of.remove(&id);
            let Some(alloc) = self.allocations.get_mut(&id) else {
                continue;
            };
            if alloc.expires <= now {
                self.remove_allocation(id);
                self.stats.allocations_expired += 1;
            } else {
                alloc.expire(now);
                let next = alloc.next_deadline();
                self.schedule(id, next);
            }
        }
    }

    /// When [`Server::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(deadline, _)| deadline)
    }

    /// A stream client (TCP/TLS) went away: its allocation goes with it (RFC 8656 §3.1).
    pub fn client_closed(&mut self, client: ClientAddr) {
        if let Some(id) = self.by_client.get(&client).copied() {
            self.remove_allocation(id);
        }
    }

    /// Whether [`Server::poll_transmit`] or [`Server::poll_command`] has something.
    pub fn has_output(&self) -> bool {
        !self.transmits.is_empty() || !self.commands.is_empty()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// Refuse new allocations from now on; existing ones keep relaying until they end.
    pub fn start_drain(&mut self) {
        self.draining = true;
    }

    /// Whether `client` holds an allocation (stream transports close idle clients without one).
    pub fn has_allocation(&self, client: &ClientAddr) -> bool {
        self.by_client.contains_key(client)
    }

    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    /// Counters, with the gauges computed now.
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.allocations_active = self.allocations.len() as u64;
        stats.permissions_active = self
            .allocations
            .values()
            .map(|a| a.permission_count() as u64)
            .sum();
        stats.channels_active = self
            .allocations
            .values()
            .map(|a| a.channel_count() as u64)
            .sum();
        stats
    }

    fn unix(&self, now: Instant) -> u64 {
        self.base.1 + now.saturating_duration_since(self.base.0).as_secs()
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Indications need a transaction id; uniqueness, not secrecy, matters for them.
    fn fresh_transaction(&mut self) -> TransactionId {
        let n = self.next_id();
        let mut id = [0u8; 12];
        id[..8].copy_from_slice(&n.to_be_bytes());
        id[8..].copy_from_slice(&self.config.nonce_secret[..4]);
        TransactionId(id)
    }

    fn advertised(&self, relay: SocketAddr) -> SocketAddr {
        match self.config.external_ip {
            Some(ext)
                if ext.public.is_ipv4() == relay.is_ipv4()
                    && ext.private.is_none_or(|private| private == relay.ip()) =>
            {
                SocketAddr::new(ext.public, relay.port())
            }
            _ => relay,
        }
    }

    fn schedule(&mut self, id: u64, deadline: Instant) {
        if let Some(old) = self.timer_of.insert(id, deadline) {
            self.timers.remove(&(old, id));
        }
        self.timers.insert((deadline, id));
    }

    fn remove_allocation(&mut self, id: u64) {
        let Some(alloc) = self.allocations.remove(&id) else {
            return;
        };
        if let Some(deadline) = self.timer_of.remove(&id) {
            self.timers.remove(&(deadline, id));
        }
        self.by_client.remove(&alloc.client);
        self.by_relay.remove(&alloc.relay);
        self.release_quota(&alloc.username, alloc.client.remote.ip());
        self.commands
            .push_back(Command::ReleaseRelay { relay: alloc.relay });
    }

    fn release_quota(&mut self, username: &str, ip: IpAddr) {
        let user = quota_user(username);
        if let Some(n) = self.per_user.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                self.per_user.remove(user);
            }
        }
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    fn request(&mut self, now: Instant, client: ClientAddr, msg: &Message<'_>) {
        let unknown: Vec<AttrType> = msg.unknown_comprehension_required().collect();
        if !unknown.is_empty() {
            let mut out = Vec::with_capacity(96);
            let mut b =
                MessageBuilder::new(&mut out, Class::Error, msg.method(), msg.transaction_id());
            b.add(&Attribute::ErrorCode(ErrorCode::UNKNOWN_ATTRIBUTE))
                .add(&Attribute::UnknownAttributes(AttrTypeList::new(&unknown)))
                .fingerprint();
            if b.finish().is_ok() {
                self.transmits.push_back(Transmit {
                    to: client,
                    data: out,
                });
            }
            return;
        }
        let method = msg.method();
        if method == Method::BINDING {
            self.binding(client, msg);
            return;
        }
        let known = [
            Method::ALLOCATE,
            Method::REFRESH,
            Method::CREATE_PERMISSION,
            Method::CHANNEL_BIND,
        ];
        if !known.contains(&method) {
            let refusal = Refusal::new(ErrorCode::BAD_REQUEST, None);
            self.refuse(now, client, method, msg.transaction_id(), refusal);
            return;
        }
        let result = self
            .authenticate(now, client, msg)
            .and_then(|(username, key)| {
                if method == Method::ALLOCATE {
                    self.allocate(client, msg, username, key)
                } else {
                    self.on_allocation(now, client, msg, &username, key)
                }
            });
        if let Err(refusal) = result {
            self.refuse(now, client, method, msg.transaction_id(), refusal);
        }
    }

    fn binding(&mut self, client: ClientAddr, msg: &Message<'_>) {
        self.stats.bindings += 1;
        let mut out = Vec::with_capacity(64);
        let mut b = MessageBuilder::new(
            &mut out,
            Class::Success,
            Method::BINDING,
            msg.transaction_id(),
        );
        b.add(&Attribute::XorMappedAddress(client.remote))
            .add(&Attribute::Software(&self.config.software))
            .fingerprint();
        if b.finish().is_ok() {
            self.transmits.push_back(Transmit {
                to: client,
                data: out,
            });
        }
    }

    /// The username and key whose MESSAGE-INTEGRITY the request carries (RFC 8489 §9.2.4).
    fn authenticate(
        &mut self,
        now: Instant,
        client: ClientAddr,
        msg: &Message<'_>,
    ) -> Result<(String, Key), Refusal> {
        let fail = |stats: &mut Stats, why: AuthFailure, code: ErrorCode<'static>| {
            stats.auth_failed(why);
            Err(Refusal::new(code, None))
        };
        if !msg.has_integrity() {
            return fail(
                &mut self.stats,
                AuthFailure::Missing,
                ErrorCode::UNAUTHENTICATED,
            );
        }
        let text = |typ| match msg.attribute(typ) {
            Some(Ok(Attribute::Username(s) | Attribute::Realm(s) | Attribute::Nonce(s))) => Some(s),
            _ => None,
        };
        let (Some(username), Some(realm), Some(nonce)) = (
            text(AttrType::USERNAME),
            text(AttrType::REALM),
            text(AttrType::NONCE),
        ) else {
            return fail(
                &mut self.stats,
                AuthFailure::BadRequest,
                ErrorCode::BAD_REQUEST,
            );
        };
        let now_unix = self.unix(now);
        if !self.nonces.is_fresh(nonce, client.remote.ip(), now_unix) {
            return fail(
                &mut self.stats,
                AuthFailure::StaleNonce,
                ErrorCode::STALE_NONCE,
            );
        }
        if realm != self.config.realm {
            return fail(
                &mut self.stats,
                AuthFailure::UnknownUser,
                ErrorCode::UNAUTHENTICATED,
            );
        }
        let keys = match self
            .config
            .credentials
            .candidate_keys(username, realm, now_unix)
        {
            Ok(keys) => keys,
            Err(why) => return fail(&mut self.stats, why, ErrorCode::UNAUTHENTICATED),
        };
        match keys
            .into_iter()
            .find(|key| msg.verify_integrity(key).is_ok())
        {
            Some(key) => Ok((username.to_owned(), key)),
            None => fail(
                &mut self.stats,
                AuthFailure::BadIntegrity,
                ErrorCode::UNAUTHENTICATED,
            ),
        }
    }

    fn allocate(
        &mut self,
        client: ClientAddr,
        msg: &Message<'_>,
        username: String,
        key: Key,
    ) -> Result<(), Refusal> {
        let refuse = |code| Err(Refusal::new(code, Some(key)));
        let transaction = msg.transaction_id();
        if let Some(alloc) = self
            .by_client
            .get(&client)
            .and_then(|id| self.allocations.get(id))
        {
            // A retransmitted Allocate gets the same answer; any other is a mismatch.
            if alloc.created_by == transaction && !alloc.created_response.is_empty() {
                let data = alloc.created_response.clone();
                self.transmits.push_back(Transmit { to: client, data });
                return Ok(());
            }
            return refuse(ErrorCode::ALLOCATION_MISMATCH);
        }
        if let Some(p) = self.pending.values().find(|p| p.client == client) {
            return if p.transaction == transaction {
                Ok(())
            } else {
                refuse(ErrorCode::ALLOCATION_MISMATCH)
            };
        }
        if self.draining {
            return refuse(ErrorCode::INSUFFICIENT_CAPACITY);
        }
        match msg.attribute(AttrType::REQUESTED_TRANSPORT) {
            Some(Ok(Attribute::RequestedTransport(PROTOCOL_UDP))) => {}
            Some(Ok(Attribute::RequestedTransport(_))) => {
                return refuse(ErrorCode::UNSUPPORTED_TRANSPORT);
            }
            _ => return refuse(ErrorCode::BAD_REQUEST),
        }
        // EVEN-PORT gets an even port; its R bit (reserve the next port) is not honoured, so no
        // RESERVATION-TOKEN is ever issued and one presented cannot be valid (RFC 8656 §7.2).
        let even_port = msg.attribute(AttrType::EVEN_PORT).is_some();
        if msg.attribute(AttrType::RESERVATION_TOKEN).is_some() {
            return refuse(ErrorCode::INSUFFICIENT_CAPACITY);
        }
        let ipv6 = match msg.attribute(AttrType::REQUESTED_ADDRESS_FAMILY) {
            None => false,
            Some(Ok(Attribute::RequestedAddressFamily(AddressFamily::IPV4))) => false,
            Some(Ok(Attribute::RequestedAddressFamily(AddressFamily::IPV6)))
                if self.config.ipv6_relays =>
            {
                true
            }
            Some(Ok(Attribute::RequestedAddressFamily(_))) => {
                return refuse(ErrorCode::ADDRESS_FAMILY_NOT_SUPPORTED);
            }
            Some(_) => return refuse(ErrorCode::BAD_REQUEST),
        };
        let lifetime = self.lifetime(msg)?;
        let ip = client.remote.ip();
        let user = quota_user(&username);
        let over = self.allocations.len() + self.pending.len() >= self.config.max_allocations
            || self.per_user.get(user).copied().unwrap_or(0)
                >= self.config.max_allocations_per_user
            || self.per_ip.get(&ip).copied().unwrap_or(0) >= self.config.max_allocations_per_ip;
        if over {
            self.stats.quota_rejections += 1;
            return refuse(ErrorCode::ALLOCATION_QUOTA_REACHED);
        }
        *self.per_user.entry(user.to_owned()).or_default() += 1;
        *self.per_ip.entry(ip).or_default() += 1;
        let id = self.next_id();
        self.pending.insert(
            id,
            Pending {
                client,
                transaction,
                username,
                key,
                lifetime,
            },
        );
        self.commands.push_back(Command::BindRelay {
            id,
            client,
            ipv6,
            even_port,
        });
        Ok(())
    }

    /// The granted lifetime: the requested one (or the default) within [default, max];
    /// zero only when asked for (Refresh deletes then).
    fn lifetime(&self, msg: &Message<'_>) -> Result<Duration, Refusal> {
        let requested = match msg.attribute(AttrType::LIFETIME) {
            None => return Ok(self.config.default_lifetime),
            Some(Ok(Attribute::Lifetime(secs))) => Duration::from_secs(u64::from(secs)),
            Some(_) => return Err(Refusal::new(ErrorCode::BAD_REQUEST, None)),
        };
        if requested.is_zero() {
            return Ok(Duration::ZERO);
        }
        Ok(requested.clamp(
            self.config.default_lifetime.min(self.config.max_lifetime),
            self.config.max_lifetime,
        ))
    }

    /// Refresh, CreatePermission and ChannelBind: requests on an existing allocation.
    fn on_allocation(
        &mut self,
        now: Instant,
        client: ClientAddr,
        msg: &Message<'_>,
        username: &str,
        key: Key,
    ) -> Result<(), Refusal> {
        let refuse = |code| Err(Refusal::new(code, Some(key)));
        let Some(&id) = self.by_client.get(&client) else {
            return refuse(ErrorCode::ALLOCATION_MISMATCH);
        };
        if self
            .allocations
            .get(&id)
            .is_some_and(|a| a.username != username)
        {
            self.stats.auth_failed(AuthFailure::WrongCredentials);
            return refuse(ErrorCode::WRONG_CREDENTIALS);
        }
        let method = msg.method();
        let mut extra: Option<Attribute<'static>> = None;
        if method == Method::REFRESH {
            let lifetime = self
                .lifetime(msg)
                .map_err(|_| Refusal::new(ErrorCode::BAD_REQUEST, Some(key)))?;
            if lifetime.is_zero() {
                self.remove_allocation(id);
            } else if let Some(alloc) = self.allocations.get_mut(&id) {
                alloc.expires = now + lifetime;
                let next = alloc.next_deadline();
                self.schedule(id, next);
            }
            extra = Some(Attribute::Lifetime(lifetime.as_secs() as u32));
        } else {
            let peers = self.checked_peers(msg, id, key)?;
            let alloc = self
                .allocations
                .get_mut(&id)
                .ok_or(Refusal::new(ErrorCode::ALLOCATION_MISMATCH, Some(key)))?;
            if !alloc.has_room_for(&peers, method == Method::CHANNEL_BIND) {
                return refuse(ErrorCode::INSUFFICIENT_CAPACITY);
            }
            if method == Method::CHANNEL_BIND {
                let number = match msg.attribute(AttrType::CHANNEL_NUMBER) {
                    Some(Ok(Attribute::ChannelNumber(n))) => n,
                    _ => return refuse(ErrorCode::BAD_REQUEST),
                };
                let [peer] = peers.as_slice() else {
                    return refuse(ErrorCode::BAD_REQUEST);
                };
                if !alloc.can_bind(number, *peer) {
                    return refuse(ErrorCode::BAD_REQUEST);
                }
                alloc.bind(number, *peer, now);
            }
            for peer in &peers {
                alloc.permit(peer.ip(), now);
            }
            let next = alloc.next_deadline();
            self.schedule(id, next);
        }
        let mut out = Vec::with_capacity(64);
        let mut b = MessageBuilder::new(&mut out, Class::Success, method, msg.transaction_id());
        if let Some(attr) = &extra {
            b.add(attr);
        }
        b.add(&Attribute::Software(&self.config.software))
            .message_integrity(&key)
            .fingerprint();
        if b.finish().is_ok() {
            self.transmits.push_back(Transmit {
                to: client,
                data: out,
            });
        }
        Ok(())
    }

    /// Every XOR-PEER-ADDRESS of the request, each of the relay's family and allowed by policy.
    fn checked_peers(
        &mut self,
        msg: &Message<'_>,
        id: u64,
        key: Key,
    ) -> Result<Vec<SocketAddr>, Refusal> {
        let relay_v4 = self.allocations.get(&id).is_some_and(|a| a.relay.is_ipv4());
        let mut peers = Vec::new();
        for attr in msg.attributes() {
            match attr {
                Ok(Attribute::XorPeerAddress(peer)) => peers.push(peer),
                Ok(_) => {}
                Err(_) => return Err(Refusal::new(ErrorCode::BAD_REQUEST, Some(key))),
            }
        }
        if peers.is_empty() {
            return Err(Refusal::new(ErrorCode::BAD_REQUEST, Some(key)));
        }
        if peers.iter().any(|p| p.is_ipv4() != relay_v4) {
            return Err(Refusal::new(
                ErrorCode::PEER_ADDRESS_FAMILY_MISMATCH,
                Some(key),
            ));
        }
        if peers.iter().any(|p| !self.config.filter.permits(p.ip())) {
            self.stats.denied_peers += 1;
            return Err(Refusal::new(ErrorCode::FORBIDDEN, Some(key)));
        }
        Ok(peers)
    }

    fn send_indication(
        &mut self,
        now: Instant,
        client: ClientAddr,
        msg: &Message<'_>,
        packet: &[u8],
    ) -> ClientAction {
        let Some(alloc) = self
            .by_client
            .get(&client)
            .and_then(|id| self.allocations.get_mut(id))
        else {
            return ClientAction::Done;
        };
        let (mut peer, mut data) = (None, None);
        for attr in msg.attributes() {
            match attr {
                Ok(Attribute::XorPeerAddress(p)) => peer = Some(p),
                Ok(Attribute::Data(d)) => data = Some(d),
                Ok(_) => {}
                Err(_) => return ClientAction::Done,
            }
        }
        let (Some(peer), Some(data)) = (peer, data) else {
            return ClientAction::Done;
        };
        if !alloc.has_permission(peer.ip(), now) || !alloc.spend(data.len(), now) {
            return ClientAction::Done;
        }
        // DATA borrows from `packet`, so its position there is what the driver sends.
        let start = data.as_ptr() as usize - packet.as_ptr() as usize;
        self.stats.packets_to_peer += 1;
        self.stats.bytes_to_peer += data.len() as u64;
        ClientAction::ToPeer {
            relay: alloc.relay,
            peer,
            data: start..start + data.len(),
        }
    }

    fn client_channel_data(
        &mut self,
        now: Instant,
        client: ClientAddr,
        packet: &[u8],
    ) -> ClientAction {
        let Ok(frame) = ChannelData::decode(packet) else {
            self.stats.malformed += 1;
            return ClientAction::Done;
        };
        let Some(alloc) = self
            .by_client
            .get(&client)
            .and_then(|id| self.allocations.get_mut(id))
        else {
            return ClientAction::Done;
        };
        let Some(peer) = alloc.channel_peer(frame.channel, now) else {
            return ClientAction::Done;
        };
        if !alloc.has_permission(peer.ip(), now) {
            return ClientAction::Done;
        }
        if !alloc.spend(frame.data.len(), now) {
            self.stats.bandwidth_drops += 1;
            return ClientAction::Done;
        }
        self.stats.packets_to_peer += 1;
        self.stats.bytes_to_peer += frame.data.len() as u64;
        let start = crate::proto::CHANNEL_DATA_HEADER_LEN;
        ClientAction::ToPeer {
            relay: alloc.relay,
            peer,
            data: start..start + frame.data.len(),
        }
    }

    /// Queues an error response: 401/438 carry REALM and a fresh NONCE so the client can retry.
    fn refuse(
        &mut self,
        now: Instant,
        client: ClientAddr,
        method: Method,
        transaction: TransactionId,
        refusal: Refusal,
    ) {
        let challenge = matches!(refusal.code.code, 401 | 438);
        let nonce = challenge.then(|| self.nonces.mint(client.remote.ip(), self.unix(now)));
        let mut out = Vec::with_capacity(128);
        let mut b = MessageBuilder::new(&mut out, Class::Error, method, transaction);
        b.add(&Attribute::ErrorCode(refusal.code));
        if let Some(nonce) = &nonce {
            b.add(&Attribute::Realm(&self.config.realm))
                .add(&Attribute::Nonce(nonce));
        }
        b.add(&Attribute::Software(&self.config.software));
        if let Some(key) = &refusal.key {
            b.message_integrity(key);
        }
        b.fingerprint();
        if b.finish().is_ok() {
            self.transmits.push_back(Transmit {
                to: client,
                data: out,
            });
        }
    }
}

/// Whose quota an allocation counts against: the user a REST credential was minted for, so
/// fresh credentials (a new expiry each second) do not reset it; any other username as it is.
fn quota_user(username: &str) -> &str {
    common::turn_auth::rest_user_id(username).unwrap_or(username)
}
