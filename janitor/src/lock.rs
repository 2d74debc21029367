//! The distributed lock that keeps overlapping janitors off the same data: `SET key token NX PX`,
//! released only by its holder (a token-checked compare-and-delete).

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{RedisError, Script};

/// Delete the lock only if it still holds our token (it may have expired and been retaken).
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// A held lock. Dropping it without [`Lock::release`] leaves it to expire after its TTL.
#[derive(Debug)]
pub struct Lock {
    key: String,
    token: String,
}

impl Lock {
    /// Takes the lock at `key` for `ttl`; `None` while another holder has it.
    pub async fn acquire<C: ConnectionLike + Send>(
        conn: &mut C,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<Self>, RedisError> {
        let token = format!("{:032x}", rand::random::<u128>());
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(conn)
            .await?;
        Ok(set.map(|_| Self {
            key: key.to_owned(),
            token,
        }))
    }

    /// Releases the lock; `false` if it had already expired (and perhaps passed to another).
    pub async fn release<C: ConnectionLike + Send>(self, conn: &mut C) -> Result<bool, RedisError> {
        let deleted: i64 = Script::new(RELEASE)
            .key(&self.key)
            .arg(&self.token)
            .invoke_async(conn)
            .await?;
        Ok(deleted == 1)
    }
}
