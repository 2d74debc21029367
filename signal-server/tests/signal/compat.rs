//! The compatibility faces, over real sockets and every store: the Firebase RTDB subset
//! (REST, streaming, admin listing) and the Twilio token endpoint.

#![allow(unreachable_pub)]

use std::time::Duration;

use serde_json::{Value, json};

use crate::suite::Boot;
use crate::support::{Server, SseClient, SseEvent};

const FB: &str = "/firebase";

async fn fb_put(s: &Server, path: &str, body: &str) -> reqwest::Response {
    s.http
        .put(s.url(&format!("{FB}{path}")))
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn fb_get(s: &Server, path: &str) -> (u16, Value) {
    let r = s.get(&format!("{FB}{path}")).await;
    let status = r.status().as_u16();
    assert_eq!(r.headers()["content-type"], "application/json");
    (status, r.json().await.unwrap())
}

pub async fn fb_stream(s: &Server, path: &str) -> SseClient {
    let r = s
        .http
        .get(s.url(&format!("{FB}{path}")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    SseClient::from_response(r)
}

/// The next `put` event's data, skipping keep-alives.
pub async fn next_put(sse: &mut SseClient) -> Value {
    loop {
        let SseEvent { event, data, .. } = sse.next().await.expect("stream open");
        if event == "keep-alive" {
            assert_eq!(data, Value::Null);
            continue;
        }
        assert_eq!(event, "put");
        assert_eq!(data["path"], "/");
        return data["data"].clone();
    }
}

/// Firebase-style error body: `{"error": "..."}`.
async fn fb_error(r: reqwest::Response, status: u16) -> String {
    assert_eq!(r.status().as_u16(), status);
    let body: Value = r.json().await.unwrap();
    body["error"].as_str().expect("error string").to_owned()
}

pub async fn firebase_rest(boot: Boot<'_>) {
    let s = boot(&["--max-blob-bytes", "1024", "--max-slots", "3"]).await;
    let offer = json!({"payload": "gAAAAAB-fernet", "timestamp": 1_700_000_000_000_u64});
    // A PUT creates the room under the client's ID and echoes the body.
    let r = fb_put(&s, "/rooms/PYP3ER/offer.json", &offer.to_string()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), offer);
    assert_eq!(
        fb_get(&s, "/rooms/PYP3ER/offer.json").await,
        (200, offer.clone())
    );
    assert_eq!(
        fb_get(&s, "/rooms/PYP3ER/answer.json").await,
        (200, Value::Null)
    );
    assert_eq!(
        fb_get(&s, "/rooms/NOSUCH/offer.json").await,
        (200, Value::Null)
    );
    // It is a native room with a JSON blob, under the same TTLs.
    let native = s.get("/v1/rooms/PYP3ER/blobs/offer").await;
    assert_eq!(native.headers()["content-type"], "application/json");
    assert_eq!(native.json::<Value>().await.unwrap(), offer);
    fb_put(&s, "/rooms/PYP3ER/answer.json", "\"a\"").await;
    assert_eq!(
        fb_get(&s, "/rooms/PYP3ER.json").await,
        (200, json!({"offer": offer, "answer": "a"}))
    );
    // A room PUT replaces its children; a null child or slot PUT deletes.
    let r = fb_put(
        &s,
        "/rooms/PYP3ER.json",
        r#"{"offer": 1, "cand-1": [1,2], "x": null}"#,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        fb_get(&s, "/rooms/PYP3ER.json").await.1,
        json!({"offer": 1, "cand-1": [1, 2]})
    );
    assert_eq!(
        fb_put(&s, "/rooms/PYP3ER/offer.json", "null")
            .await
            .status(),
        200
    );
    assert_eq!(
        fb_get(&s, "/rooms/PYP3ER.json").await.1,
        json!({"cand-1": [1, 2]})
    );
    let r = s.delete(&format!("{FB}/rooms/PYP3ER/cand-1.json")).await;
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, "null".into())
    );
    fb_put(&s, "/rooms/PYP3ER/offer.json", "2").await;
    let r = s.delete(&format!("{FB}/rooms/PYP3ER.json")).await;
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, "null".into())
    );
    assert_eq!(s.get("/v1/rooms/PYP3ER").await.status(), 404);
    // Deleting what is not there is fine, as on Firebase.
    assert_eq!(
        s.delete(&format!("{FB}/rooms/PYP3ER.json")).await.status(),
        200
    );

    // Bad input: Firebase-shaped errors with the native limits.
    let e = fb_error(fb_put(&s, "/rooms/PYP3ER/offer.json", "{nope").await, 400).await;
    assert!(e.contains("Invalid data"), "{e}");
    let big = format!("\"{}\"", "x".repeat(2000));
    let e = fb_error(fb_put(&s, "/rooms/PYP3ER/offer.json", &big).await, 413).await;
    assert!(e.contains("1024"), "{e}");
    fb_error(fb_put(&s, "/rooms/a%2Fb/offer.json", "1").await, 400).await;
    fb_error(fb_put(&s, "/rooms/PYP3ER/bad%20slot.json", "1").await, 400).await;
    fb_error(fb_put(&s, "/rooms/PYP3ER.json", "[1]").await, 400).await;
    fb_error(fb_put(&s, "/rooms/PYP3ER.json", r#"{"a/b": 1}"#).await, 400).await;
    fb_error(fb_put(&s, "/rooms/PYP3ER/offer", "1").await, 404).await;
    fb_error(fb_put(&s, "/other.json", "1").await, 404).await;
    let post = s
        .http
        .post(s.url(&format!("{FB}/rooms/PYP3ER.json")))
        .send()
        .await
        .unwrap();
    fb_error(post, 405).await;
    // Bad paths and queries get the Firebase shape too, never the framework's plain text.
    fb_error(fb_put(&s, "/rooms/%FF/offer.json", "1").await, 400).await;
    let twice = s.get(&format!("{FB}/rooms.json?auth=a&auth=b")).await;
    fb_error(twice, 400).await;
    let put_listing = fb_put(&s, "/rooms.json", "1").await;
    assert!(fb_error(put_listing, 405).await.contains("GET only"));
    for slot in ["a", "b", "c"] {
        fb_put(&s, &format!("/rooms/FULL01/{slot}.json"), "1").await;
    }
    fb_error(fb_put(&s, "/rooms/FULL01/d.json", "1").await, 409).await;
}

pub async fn firebase_limits(boot: Boot<'_>) {
    let s = boot(&["--writes-per-second", "1", "--create-per-minute", "1"]).await;
    // The first write creates the room (one create token), the second room has none left.
    assert_eq!(
        fb_put(&s, "/rooms/LIMIT1/offer.json", "1").await.status(),
        200
    );
    let e = fb_error(fb_put(&s, "/rooms/LIMIT2/offer.json", "1").await, 429).await;
    assert!(!e.is_empty());
    // Writes to the existing room run into the write bucket (burst 2).
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            fb_put(&s, "/rooms/LIMIT1/offer.json", "2")
                .await
                .status()
                .as_u16(),
        );
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    // Streams count as watchers.
    let s = boot(&["--max-watchers-per-room", "1"]).await;
    let mut first = fb_stream(&s, "/rooms/WATCH1/offer.json").await;
    assert_eq!(next_put(&mut first).await, Value::Null);
    let r = s
        .http
        .get(s.url(&format!("{FB}/rooms/WATCH1/answer.json")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    fb_error(r, 429).await;
}

pub async fn firebase_streams(boot: Boot<'_>) {
    // Streams are not bound by the request time limit (pypeer waits up to 180 s on one).
    let s = boot(&[
        "--firebase-keep-alive",
        "300ms",
        "--idle-ttl",
        "10m",
        "--request-timeout",
        "200ms",
    ])
    .await;
    // A joiner waits on a room that does not exist yet.
    let mut joiner = fb_stream(&s, "/rooms/STRM01/offer.json").await;
    assert_eq!(next_put(&mut joiner).await, Value::Null);
    let mut whole = fb_stream(&s, "/rooms/STRM01.json").await;
    assert_eq!(next_put(&mut whole).await, Value::Null);
    let offer = json!({"payload": "p", "timestamp": 1});
    fb_put(&s, "/rooms/STRM01/offer.json", &offer.to_string()).await;
    assert_eq!(next_put(&mut joiner).await, offer);
    assert_eq!(next_put(&mut whole).await, json!({"offer": offer}));
    // Another child does not wake the slot stream, but changes the room's value.
    fb_put(&s, "/rooms/STRM01/answer.json", "\"a\"").await;
    assert_eq!(
        next_put(&mut whole).await,
        json!({"offer": offer, "answer": "a"})
    );
    fb_put(&s, "/rooms/STRM01/offer.json", "2").await;
    assert_eq!(next_put(&mut joiner).await, json!(2));
    assert_eq!(
        next_put(&mut whole).await,
        json!({"offer": 2, "answer": "a"})
    );
    // Keep-alives flow while nothing changes, well past the request time limit.
    for _ in 0..3 {
        let e = joiner.next().await.unwrap();
        assert_eq!((e.event.as_str(), e.data), ("keep-alive", Value::Null));
    }
    // Deleting the room sends null, and the stream stays for a room of the same ID.
    assert_eq!(
        s.delete(&format!("{FB}/rooms/STRM01.json")).await.status(),
        200
    );
    assert_eq!(next_put(&mut joiner).await, Value::Null);
    assert_eq!(next_put(&mut whole).await, Value::Null);
    fb_put(&s, "/rooms/STRM01/offer.json", "3").await;
    assert_eq!(next_put(&mut joiner).await, json!(3));
    // Silent TTL expiry reaches the stream at the next keep-alive.
    s.clock.advance(Duration::from_secs(11 * 60));
    assert_eq!(next_put(&mut joiner).await, Value::Null);
    // Native writes of non-JSON bytes have no Firebase value.
    let code = s.create_room().await;
    s.put_ok(&code, "raw", "\u{1}binary").await;
    assert_eq!(
        fb_get(&s, &format!("/rooms/{code}.json")).await.1,
        Value::Null
    );
}

pub async fn firebase_admin_listing(boot: Boot<'_>) {
    let open = boot(&[]).await;
    let r = open.get(&format!("{FB}/rooms.json")).await;
    assert_eq!(fb_error(r, 401).await, "Permission denied");
    let r = open.get(&format!("{FB}/rooms.json?auth=anything")).await;
    assert_eq!(fb_error(r, 401).await, "Permission denied");

    let s = boot(&[
        "--firebase-admin-secret",
        "s3cret",
        "--firebase-list-max",
        "2",
    ])
    .await;
    assert_eq!(
        fb_get(&s, "/rooms.json?auth=s3cret").await,
        (200, Value::Null)
    );
    fb_put(&s, "/rooms/LIST01/offer.json", r#"{"timestamp": 5}"#).await;
    fb_put(&s, "/rooms/LIST02/answer.json", "7").await;
    assert_eq!(
        fb_get(&s, "/rooms.json?auth=s3cret").await,
        (
            200,
            json!({"LIST01": {"offer": {"timestamp": 5}}, "LIST02": {"answer": 7}})
        )
    );
    fb_error(s.get(&format!("{FB}/rooms.json?auth=wrong")).await, 401).await;
    fb_put(&s, "/rooms/LIST03/answer.json", "7").await;
    let e = fb_error(s.get(&format!("{FB}/rooms.json?auth=s3cret")).await, 413).await;
    assert!(e.contains("more than 2 rooms"), "{e}");
}

pub async fn twilio_tokens(boot: Boot<'_>) {
    let s = boot(&[
        "--twilio-account-sid",
        "AC0123",
        "--twilio-auth-token",
        "tok3n",
        "--turn-secrets",
        "newest,older",
        "--turn-urls",
        "turn:127.0.0.1:3478?transport=udp,turns:127.0.0.1:5349",
        "--stun-urls",
        "stun:127.0.0.1:3478",
        "--turn-ttl",
        "2h",
    ])
    .await;
    let path = "/2010-04-01/Accounts/AC0123/Tokens.json";
    let post = |user: &str, token: &str, form: &'static str| {
        s.http
            .post(s.url(path))
            .basic_auth(user, Some(token))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
    };
    let r = post("AC0123", "tok3n", "").await.unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["account_sid"], "AC0123");
    assert_eq!(body["ttl"], "7200", "the server's TURN TTL, as a string");
    assert!(body["date_created"].as_str().unwrap().ends_with(" +0000"));
    assert_eq!(body["date_created"], body["date_updated"]);
    let servers = body["ice_servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3);
    assert_eq!(servers[0]["urls"], "stun:127.0.0.1:3478");
    assert!(servers[0].get("credential").is_none());
    let username = body["username"].as_str().unwrap();
    let password = body["password"].as_str().unwrap();
    for turn in &servers[1..] {
        assert_eq!(
            (turn["username"].as_str(), turn["credential"].as_str()),
            (Some(username), Some(password))
        );
    }
    let secrets = common::turn_auth::SharedSecret::parse_list("newest\nolder").unwrap();
    common::turn_auth::verify(&secrets, username, password, s.clock.now_unix()).unwrap();

    let r = post("AC0123", "tok3n", "Ttl=60").await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["ttl"], "60");
    // Longer than the server allows is capped, not refused.
    let r = post("AC0123", "tok3n", "Ttl=86400").await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["ttl"], "7200");
    let r = post("AC0123", "tok3n", "Ttl=never").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 21602);

    for (user, token) in [("AC0123", "wrong"), ("ACother", "tok3n"), ("", "")] {
        let r = post(user, token, "").await.unwrap();
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (body["code"].as_u64(), body["status"].as_u64()),
            (Some(20003), Some(401))
        );
    }
    let r = s.http.post(s.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Oversized forms and undecodable paths answer in Twilio's shape.
    let big = s
        .http
        .post(s.url(path))
        .basic_auth("AC0123", Some("tok3n"))
        .body(format!("Ttl=60&pad={}", "x".repeat(5000)))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    assert_eq!(big.json::<Value>().await.unwrap()["code"], 20413);
    let r = s
        .http
        .post(s.url("/2010-04-01/Accounts/%FF/Tokens.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 20400);
    // Another account's path with valid credentials for ours.
    let r = s
        .http
        .post(s.url("/2010-04-01/Accounts/ACother/Tokens.json"))
        .basic_auth("AC0123", Some("tok3n"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Rate limited like the native API, with Retry-After.
    let limited = boot(&[
        "--twilio-account-sid",
        "AC0123",
        "--twilio-auth-token",
        "tok3n",
        "--turn-secrets",
        "s",
        "--turn-urls",
        "turn:127.0.0.1:3478",
        "--writes-per-second",
        "1",
    ])
    .await;
    let mut refused = None;
    for _ in 0..4 {
        let r = limited
            .http
            .post(limited.url(path))
            .basic_auth("AC0123", Some("tok3n"))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("the write bucket runs dry");
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(refused.json::<Value>().await.unwrap()["code"], 20429);
    // Off unless configured.
    let off = boot(&[]).await;
    assert_eq!(
        off.http.post(off.url(path)).send().await.unwrap().status(),
        404
    );
}

/// Every path and method `/openapi.json` lists reaches a handler (never the router's
/// fallback), the compatibility layers' paths follow their configured mounts, and disabled
/// layers are not described.
pub async fn openapi_describes_every_mounted_route() {
    let twilio = ["--twilio-account-sid", "AC0123", "--twilio-auth-token", "t"];
    let s = Server::start(None, &twilio).await;
    let spec = spec_paths(&s).await;
    for layer in ["firebase", "peerjs", "twilio"] {
        assert!(
            spec.iter().any(|(_, l)| l.as_deref() == Some(layer)),
            "no {layer} path in the spec"
        );
    }
    assert_every_path_is_routed(&s).await;

    let moved = Server::start(
        None,
        &["--firebase-prefix", "/fb", "--peerjs-path", "/sig/"],
    )
    .await;
    for (path, layer) in spec_paths(&moved).await {
        match layer.as_deref() {
            Some("firebase") => assert!(path.starts_with("/fb/"), "{path}"),
            Some("peerjs") => assert!(path.starts_with("/sig"), "{path}"),
            Some(other) => panic!("{other} is disabled but {path} is described"),
            None => assert!(path.starts_with('/'), "{path}"),
        }
    }
    assert_every_path_is_routed(&moved).await;

    // At the root, Firebase paths sit beside the native API without shadowing it.
    let root = Server::start(None, &["--firebase-prefix", "", "--peerjs-path", "off"]).await;
    for (path, layer) in spec_paths(&root).await {
        if layer.as_deref() == Some("firebase") {
            assert!(path.starts_with("/rooms"), "{path}");
        }
    }
    assert_every_path_is_routed(&root).await;
    let put = reqwest::Client::new()
        .put(root.url("/rooms/ROOT01/offer.json"))
        .body(r#"{"sdp":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let got: Value = root
        .get("/rooms/ROOT01/offer.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["sdp"], "x");
    let native = root.create_room().await;
    assert_eq!(root.get(&format!("/v1/rooms/{native}")).await.status(), 200);
    assert_eq!(root.get("/healthz").await.status(), 200);

    let off = Server::start(None, &["--firebase-prefix", "off", "--peerjs-path", "off"]).await;
    let described = spec_paths(&off).await;
    assert!(
        described.iter().all(|(_, layer)| layer.is_none()),
        "{described:?}"
    );
    assert!(described.iter().any(|(p, _)| p == "/v1/rooms"));
}

/// The spec's paths with their compatibility layer, if any.
async fn spec_paths(s: &Server) -> Vec<(String, Option<String>)> {
    let spec: Value = s.get("/openapi.json").await.json().await.unwrap();
    spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let layer = item["x-switchboard-layer"].as_str().map(str::to_owned);
            (path.clone(), layer)
        })
        .collect()
}

async fn assert_every_path_is_routed(s: &Server) {
    let spec: Value = s.get("/openapi.json").await.json().await.unwrap();
    for (template, item) in spec["paths"].as_object().unwrap() {
        let path = fill_params(template);
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_none() {
                continue;
            }
            let request = s
                .http
                .request(method.to_uppercase().parse().unwrap(), s.url(&path))
                .timeout(Duration::from_secs(5));
            let response = request.send().await.unwrap();
            let status = response.status();
            let body = response.text().await.unwrap();
            // The router's fallbacks: 405, the native 404 `not_found`, Firebase's catch-all.
            let error = serde_json::from_str::<Value>(&body).unwrap_or_default()["error"].clone();
            let unrouted = status == 405
                || (status == 404 && error["code"] == "not_found")
                || (status == 404 && error.as_str().is_some_and(|e| e.contains("layer serves")));
            assert!(!unrouted, "{method} {template} -> {status} {body}");
        }
    }
}

/// `/v1/rooms/{code}/blobs/{slot}` -> `/v1/rooms/AB12CD/blobs/AB12CD`.
fn fill_params(template: &str) -> String {
    let mut path = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        path.push_str(&rest[..open]);
        path.push_str("AB12CD");
        rest = &rest[close..];
    }
    path + rest
}
