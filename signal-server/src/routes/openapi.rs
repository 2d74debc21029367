//! `/openapi.json` as this server is configured: the compatibility layers' paths, written at
//! their default mounts in the spec, move to the configured mounts; disabled layers vanish.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::compat::CompatSettings;

const SPEC: &str = include_str!("../../openapi.json");
/// Marks a path item as belonging to a compatibility layer.
const LAYER: &str = "x-switchboard-layer";

/// The rendered spec, built once when the router is.
#[derive(Debug, Clone)]
pub struct OpenApi(Bytes);

impl OpenApi {
    pub fn new(compat: &CompatSettings) -> Self {
        let mut spec: Value = serde_json::from_str(SPEC).expect("openapi.json is valid JSON");
        if let Some(paths) = spec.get_mut("paths").and_then(Value::as_object_mut) {
            *paths = mounted(std::mem::take(paths), compat);
        }
        Self(Bytes::from(spec.to_string()))
    }

    pub fn response(&self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0.clone()).into_response()
    }
}

fn mounted(paths: Map<String, Value>, compat: &CompatSettings) -> Map<String, Value> {
    paths
        .into_iter()
        .filter_map(|(path, item)| {
            let path = match item.get(LAYER).and_then(Value::as_str) {
                None => path,
                Some("firebase") => remount(&path, "/firebase", &compat.firebase.as_ref()?.prefix),
                Some("peerjs") => remount(&path, "/peerjs", &compat.peerjs.as_ref()?.path),
                Some("twilio") => compat.twilio.as_ref().map(|_| path)?,
                Some(_) => path,
            };
            Some((path, item))
        })
        .collect()
}

/// `/firebase/rooms.json` under mount `/fb` is `/fb/rooms.json`; under the root, `/rooms.json`.
fn remount(path: &str, default: &str, mount: &str) -> String {
    let rest = path.strip_prefix(default).unwrap_or(path);
    let joined = format!("{}{rest}", mount.trim_end_matches('/'));
    if joined.is_empty() {
        "/".to_owned()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::remount;

    #[test]
    fn remount_moves_the_default_prefix() {
        assert_eq!(
            remount("/firebase/rooms.json", "/firebase", "/fb"),
            "/fb/rooms.json"
        );
        assert_eq!(
            remount("/firebase/rooms.json", "/firebase", ""),
            "/rooms.json"
        );
        assert_eq!(remount("/peerjs", "/peerjs", "/"), "/");
        assert_eq!(
            remount("/peerjs/{key}/id", "/peerjs", "/signal/"),
            "/signal/{key}/id"
        );
    }
}
