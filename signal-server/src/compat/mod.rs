//! Wire-compatible faces for apps written against other services, so they switch to
//! Switchboard by changing one URL. Each one stores into the same rooms, with the same limits.
//!
//! - [`firebase`]: the Firebase Realtime Database REST subset pypeer uses.
//! - [`peerjs`]: the PeerJS server protocol, across replicas.
//! - [`twilio`]: Twilio's Network Traversal token endpoint.

pub mod firebase;
mod firebase_stream;
pub mod peerjs;
pub mod twilio;

use std::time::Duration;

use axum::Router;
use common::redacted::Redacted;

use crate::app::AppState;

/// Flags of the compatibility layers.
#[derive(Debug, Clone, clap::Args)]
pub struct CompatConfig {
    /// Path prefix of the Firebase RTDB REST subset (`PYPEER_URL=http://host:port/firebase`);
    /// `off` disables it. Firebase clients name their own rooms, so it needs `--client-codes`.
    #[arg(long, env = "SB_FIREBASE_PREFIX", default_value = "/firebase")]
    pub firebase_prefix: String,

    /// Secret that `GET {prefix}/rooms.json?auth=` must carry to list every room.
    /// Without it the listing is always refused.
    #[arg(long, env = "SB_FIREBASE_ADMIN_SECRET", hide_env_values = true)]
    pub firebase_admin_secret: Option<Redacted>,

    /// Interval of `keep-alive` events on Firebase streams (they also re-check for expiry).
    #[arg(long, env = "SB_FIREBASE_KEEP_ALIVE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub firebase_keep_alive: Duration,

    /// Most rooms the admin listing returns; a larger answer is refused with 413.
    #[arg(long, env = "SB_FIREBASE_LIST_MAX", default_value_t = 1000)]
    pub firebase_list_max: usize,

    /// Mount path of the PeerJS server protocol (clients set `path` to it); `off` disables it.
    #[arg(long, env = "SB_PEERJS_PATH", default_value = "/peerjs")]
    pub peerjs_path: String,

    /// The PeerJS API key clients must send (`key` option of `new Peer`).
    #[arg(long, env = "SB_PEERJS_KEY", default_value = "peerjs")]
    pub peerjs_key: String,

    /// Answer `GET {path}{key}/peers` with the connected IDs (401 otherwise).
    #[arg(long, env = "SB_PEERJS_DISCOVERY", default_value_t = false, action = clap::ArgAction::Set)]
    pub peerjs_discovery: bool,

    /// PeerJS sockets one replica holds at once.
    #[arg(long, env = "SB_PEERJS_CONCURRENT_LIMIT", default_value_t = 5000)]
    pub peerjs_concurrent_limit: usize,

    /// Messages held for one offline PeerJS ID; more are refused with EXPIRE at once.
    #[arg(long, env = "SB_PEERJS_QUEUE_LEN", default_value_t = 64)]
    pub peerjs_queue_len: usize,

    /// How long a message waits for an offline ID before its sender gets EXPIRE.
    #[arg(long, env = "SB_PEERJS_EXPIRE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub peerjs_expire_timeout: Duration,

    /// A PeerJS client silent (no HEARTBEAT or message) this long is disconnected and its ID freed.
    #[arg(long, env = "SB_PEERJS_ALIVE_TIMEOUT", default_value = "90s", value_parser = humantime::parse_duration)]
    pub peerjs_alive_timeout: Duration,

    /// Account SID of the Twilio-shaped token endpoint (`POST /2010-04-01/Accounts/{sid}/Tokens.json`);
    /// with `--twilio-auth-token` it enables the endpoint.
    #[arg(long, env = "SB_TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,

    /// Auth token clients send as the HTTP Basic password of the token endpoint.
    #[arg(long, env = "SB_TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<Redacted>,
}

/// What the compatibility handlers need at request time.
#[derive(Debug, Clone)]
pub struct CompatSettings {
    pub firebase: Option<firebase::FirebaseSettings>,
    pub peerjs: Option<peerjs::PeerjsSettings>,
    pub twilio: Option<twilio::TwilioSettings>,
}

impl CompatConfig {
    /// Checks the flags and turns them into settings.
    pub fn settings(&self, client_codes: bool) -> Result<CompatSettings, String> {
        Ok(CompatSettings {
            firebase: firebase::FirebaseSettings::from_config(self, client_codes)?,
            peerjs: peerjs::PeerjsSettings::from_config(self)?,
            twilio: twilio::TwilioSettings::from_config(self)?,
        })
    }
}

/// Routes of every enabled layer. They sit outside the request time limit (Firebase streams
/// live long); their non-streaming calls bound their own time.
pub fn routes(settings: &CompatSettings) -> Router<AppState> {
    let mut router = Router::new();
    if let Some(fb) = &settings.firebase {
        router = router.merge(firebase::routes(&fb.prefix));
    }
    if let Some(pj) = &settings.peerjs {
        router = router.merge(peerjs::routes(&pj.path));
    }
    if settings.twilio.is_some() {
        router = router.merge(twilio::routes());
    }
    router
}
