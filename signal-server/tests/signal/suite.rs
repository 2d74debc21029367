//! The shared API suite: every case runs against the embedded store and a real Redis (and the
//! core ones against a 3-master Redis Cluster), so both stores keep one semantics.

#![allow(unreachable_pub)]

use std::time::Duration;

use serde_json::Value;

use crate::support::{Server, WsItem, kind};

pub use crate::compat::{
    firebase_admin_listing, firebase_limits, firebase_rest, firebase_streams, twilio_tokens,
};
pub use crate::peerjs::{
    peerjs_connect_rules, peerjs_http, peerjs_queue_bounds_and_liveness, peerjs_relay_rules,
};

/// Starts a server over the backend under test.
pub type Boot<'a> = &'a (
        dyn Fn(&'static [&'static str]) -> futures_util::future::BoxFuture<'static, Server> + Sync
    );

pub async fn rooms_lifecycle(boot: Boot<'_>) {
    let s = boot(&[]).await;
    let r = s.http.post(s.url("/v1/rooms")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("location").is_some());
    let room: Value = r.json().await.unwrap();
    let code = room["code"].as_str().unwrap();
    assert_eq!(code.len(), 6);
    assert!(
        code.bytes()
            .all(|b| b"23456789ABCDEFGHJKMNPQRSTUVWXYZ".contains(&b))
    );
    assert_eq!(room["version"], 0);

    let info: Value = s
        .get(&format!("/v1/rooms/{code}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["code"], code);

    // pypeer-style client codes: 201 the first time, then the live room.
    let own = s.http.put(s.url("/v1/rooms/PYP3ER")).send().await.unwrap();
    assert_eq!(own.status(), 201);
    s.put_ok("PYP3ER", "offer", "x").await;
    let again = s.http.put(s.url("/v1/rooms/PYP3ER")).send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["version"], 1);

    assert_eq!(s.delete(&format!("/v1/rooms/{code}")).await.status(), 204);
    let gone = s.get(&format!("/v1/rooms/{code}")).await;
    assert_eq!(gone.status(), 404);
    let body: Value = gone.json().await.unwrap();
    assert_eq!(body["error"]["code"], "room_not_found");
    assert_eq!(s.delete(&format!("/v1/rooms/{code}")).await.status(), 404);

    let bad = s.get("/v1/rooms/no").await;
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_room_code"
    );
}

pub async fn blobs_versions_and_preconditions(boot: Boot<'_>) {
    let s = boot(&["--max-slots", "3", "--max-blob-bytes", "1024"]).await;
    let code = s.create_room().await;
    let blob = |slot: &str| s.url(&format!("/v1/rooms/{code}/blobs/{slot}"));

    let r = s
        .http
        .put(blob("offer"))
        .header("content-type", "application/sdp")
        .header("if-none-match", "*")
        .body(vec![0u8, 159, 146, 150])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "\"1\"");
    let again = s
        .http
        .put(blob("offer"))
        .header("if-none-match", "*")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 412);
    assert_eq!(
        again.json::<Value>().await.unwrap()["error"]["code"],
        "precondition_failed"
    );

    let got = s.get(&format!("/v1/rooms/{code}/blobs/offer")).await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "application/sdp");
    assert_eq!(got.headers()["etag"], "\"1\"");
    assert_eq!(got.bytes().await.unwrap().as_ref(), [0u8, 159, 146, 150]);

    // Compare-and-set: only the current version wins.
    let stale = s
        .http
        .put(blob("offer"))
        .header("if-match", "\"7\"")
        .body("y")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
    let cas = s
        .http
        .put(blob("offer"))
        .header("if-match", "\"1\"")
        .body("y")
        .send()
        .await
        .unwrap();
    assert_eq!(cas.status(), 200);
    assert_eq!(
        s.put_ok(&code, "answer", "a").await,
        3,
        "versions increase per room"
    );

    // Limits: slot grammar, size cap, slot cap.
    assert_eq!(s.put(&code, "bad%20name", "x").await.status(), 400);
    let big = s
        .http
        .put(blob("big"))
        .body(vec![1u8; 1025])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    assert_eq!(
        big.json::<Value>().await.unwrap()["error"]["code"],
        "blob_too_large"
    );
    s.put_ok(&code, "cand-alice-3", "c").await;
    let full = s.put(&code, "cand-alice-4", "c").await;
    assert_eq!(full.status(), 409);
    assert_eq!(
        full.json::<Value>().await.unwrap()["error"]["code"],
        "too_many_slots"
    );
    assert_eq!(s.put(&code, "ttl", "x").await.status(), 409);
    let bad_ttl = s
        .http
        .put(blob("answer?ttl=3600"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_ttl.status(), 400);

    // Deletes honour If-Match and leave no partial state.
    let wrong = s
        .http
        .delete(blob("answer"))
        .header("if-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 412);
    assert_eq!(
        s.delete(&format!("/v1/rooms/{code}/blobs/answer"))
            .await
            .status(),
        204
    );
    assert_eq!(
        s.get(&format!("/v1/rooms/{code}/blobs/answer"))
            .await
            .status(),
        404
    );
    let info: Value = s
        .get(&format!("/v1/rooms/{code}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["version"], 5);
    assert_eq!(info["slots"].as_array().unwrap().len(), 2);
    assert_eq!(s.put("ZZZZZZ", "offer", "x").await.status(), 404);
}

pub async fn ttls_follow_server_time(boot: Boot<'_>) {
    let s = boot(&["--idle-ttl", "10m", "--max-age", "1h"]).await;
    let code = s.create_room().await;
    let room = format!("/v1/rooms/{code}");
    // Every write refreshes the idle TTL ...
    for _ in 0..3 {
        s.clock.advance(Duration::from_secs(9 * 60));
        s.put_ok(&code, "offer", "x").await;
    }
    s.clock.advance(Duration::from_secs(9 * 60));
    assert_eq!(s.get(&room).await.status(), 200);
    // ... and without writes the room goes after the idle TTL.
    s.clock.advance(Duration::from_secs(61));
    assert_eq!(s.get(&room).await.status(), 404);

    // The hard max age wins over writes.
    let code = s.create_room().await;
    for _ in 0..6 {
        s.clock.advance(Duration::from_secs(9 * 60));
        assert_eq!(s.put(&code, "offer", "x").await.status(), 200);
    }
    s.clock.advance(Duration::from_secs(7 * 60));
    assert_eq!(s.put(&code, "offer", "x").await.status(), 404);

    // A blob TTL expires the blob alone, logged as an `expire` change.
    let code = s.create_room().await;
    let r = s
        .http
        .put(s.url(&format!("/v1/rooms/{code}/blobs/cand-1?ttl=30s")))
        .body("c")
        .send()
        .await
        .unwrap();
    let put: Value = r.json().await.unwrap();
    assert!(put["expires_at"].as_u64().unwrap() <= put["room_expires_at"].as_u64().unwrap());
    s.clock.advance(Duration::from_secs(31));
    assert_eq!(
        s.get(&format!("/v1/rooms/{code}/blobs/cand-1"))
            .await
            .status(),
        404
    );
    let changes: Value = s
        .get(&format!("/v1/rooms/{code}/changes?after=1&wait=0"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(changes["events"][0]["op"], "expire");
    assert_eq!(changes["version"], 2);
}

pub async fn sse_sees_every_change_in_order(boot: Boot<'_>) {
    let s = boot(&[]).await;
    let code = s.create_room().await;
    let mut watch = s.sse(&format!("/v1/rooms/{code}/events"), None).await;
    let mut only_answer = s
        .sse(&format!("/v1/rooms/{code}/events?slot=answer"), None)
        .await;
    assert_eq!(watch.next().await.unwrap().event, "ready");
    assert_eq!(only_answer.next().await.unwrap().event, "ready");

    s.put_ok(&code, "offer", "o").await;
    s.put_ok(&code, "answer", "a").await;
    assert_eq!(
        s.delete(&format!("/v1/rooms/{code}/blobs/offer"))
            .await
            .status(),
        204
    );
    assert_eq!(s.delete(&format!("/v1/rooms/{code}")).await.status(), 204);

    let mut seen = Vec::new();
    while let Some(event) = watch.next().await {
        assert_eq!(event.event, "change");
        assert_eq!(event.id, event.data["version"].as_u64());
        seen.push((
            event.data["op"].as_str().unwrap().to_owned(),
            event.data["version"].as_u64().unwrap(),
        ));
    }
    let expected = [("put", 1), ("put", 2), ("delete", 3), ("room_deleted", 4)];
    assert_eq!(seen, expected.map(|(op, v)| (op.to_owned(), v)));

    let filtered: Vec<String> = {
        let mut out = Vec::new();
        while let Some(e) = only_answer.next().await {
            out.push(format!(
                "{}:{}",
                e.data["op"].as_str().unwrap(),
                e.data["slot"].as_str().unwrap_or("")
            ));
        }
        out
    };
    assert_eq!(filtered, ["put:answer", "room_deleted:"]);
}

pub async fn sse_resumes_from_last_event_id(boot: Boot<'_>) {
    let s = boot(&["--change-log-len", "4"]).await;
    let code = s.create_room().await;
    for _ in 0..3 {
        s.put_ok(&code, "offer", "o").await;
    }
    let path = format!("/v1/rooms/{code}/events");
    let mut resumed = s.sse(&path, Some(1)).await;
    assert_eq!(resumed.next().await.unwrap().event, "ready");
    assert_eq!(resumed.next().await.unwrap().id, Some(2));
    assert_eq!(resumed.next().await.unwrap().id, Some(3));

    // Beyond the bounded log the client is told to re-read the room.
    for _ in 0..6 {
        s.put_ok(&code, "offer", "o").await;
    }
    let mut too_old = s.sse(&path, Some(1)).await;
    assert_eq!(too_old.next().await.unwrap().event, "ready");
    let resync = too_old.next().await.unwrap();
    assert_eq!(resync.event, "resync");
    assert_eq!(resync.data["version"], 9);
    s.put_ok(&code, "offer", "o").await;
    assert_eq!(too_old.next().await.unwrap().id, Some(10));
    assert_eq!(resumed.next().await.unwrap().id, Some(4));

    let bad = s
        .http
        .get(s.url(&path))
        .header("last-event-id", "x")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

/// The change log serves exactly its configured length, however the store trims it.
pub async fn change_log_serves_exactly_its_length(boot: Boot<'_>) {
    let s = boot(&["--change-log-len", "4"]).await;
    let code = s.create_room().await;
    let path = format!("/v1/rooms/{code}/events");
    for n in 1..=15u64 {
        s.put_ok(&code, "offer", "o").await;
        // Within the last 4 changes: served in full.
        let mut within = s.sse(&path, Some(n.saturating_sub(4))).await;
        assert_eq!(within.next().await.unwrap().event, "ready");
        for id in n.saturating_sub(4) + 1..=n {
            assert_eq!(within.next().await.unwrap().id, Some(id), "after {n} puts");
        }
        // One further back: resync.
        if n > 4 {
            let mut beyond = s.sse(&path, Some(n - 5)).await;
            assert_eq!(beyond.next().await.unwrap().event, "ready");
            assert_eq!(
                beyond.next().await.unwrap().event,
                "resync",
                "after {n} puts"
            );
        }
    }
}

pub async fn websocket_watch(boot: Boot<'_>) {
    let s = boot(&[]).await;
    let code = s.create_room().await;
    let mut ws = s.ws(&format!("/v1/rooms/{code}/ws")).await;
    let WsItem::Event(ready) = ws.next().await else {
        panic!("no ready")
    };
    assert_eq!(kind(&ready), "ready");
    s.put_ok(&code, "offer", "o").await;
    s.put_ok(&code, "answer", "a").await;
    assert_eq!(s.delete(&format!("/v1/rooms/{code}")).await.status(), 204);
    for (op, version) in [("put", 1), ("put", 2), ("room_deleted", 3)] {
        let WsItem::Event(e) = ws.next().await else {
            panic!("expected {op}")
        };
        assert_eq!(
            (e["op"].as_str().unwrap(), e["version"].as_u64().unwrap()),
            (op, version)
        );
    }
    assert!(matches!(ws.next().await, WsItem::Close(1000)));
    let missing = s
        .http
        .get(s.url("/v1/rooms/NOPE99/ws"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

pub async fn websocket_writes(boot: Boot<'_>) {
    use tokio_tungstenite::tungstenite::Message;
    let s = boot(&["--max-blob-bytes", "1024", "--writes-per-second", "1000"]).await;
    let over_limit = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode([b'x'; 1025])
    };
    let code = s.create_room().await;
    let mut writer = s.ws(&format!("/v1/rooms/{code}/ws?slot=answer")).await;
    let mut reader = s.ws(&format!("/v1/rooms/{code}/ws?slot=offer")).await;
    for ws in [&mut writer, &mut reader] {
        let WsItem::Event(ready) = ws.next().await else {
            panic!("no ready")
        };
        assert_eq!(kind(&ready), "ready");
    }
    let put = serde_json::json!({"id": 1, "op": "put", "slot": "offer", "data": "aGk=",
                                 "content_type": "text/plain", "if_none_match": "*"});
    let ack = writer.request(put.clone()).await;
    assert_eq!(
        (kind(&ack), &ack["id"], &ack["version"]),
        ("ack", &1.into(), &1.into()),
        "{ack}"
    );
    assert!(ack["room_expires_at"].as_u64().is_some(), "{ack}");
    let WsItem::Event(change) = reader.next().await else {
        panic!("reader saw no change")
    };
    assert_eq!(
        (
            &change["op"],
            &change["slot"],
            &change["size"],
            &change["version"]
        ),
        (&"put".into(), &"offer".into(), &2.into(), &1.into()),
        "{change}"
    );
    let blob = s.get(&format!("/v1/rooms/{code}/blobs/offer")).await;
    assert_eq!(blob.headers()["content-type"], "text/plain");
    assert_eq!(blob.text().await.unwrap(), "hi");

    // Every refusal is an error frame carrying the request's id and its HTTP twin's status.
    let refused = |id: &str, frame: Value| {
        let mut frame = frame;
        frame["id"] = id.into();
        frame
    };
    let cases = [
        (refused("again", put.clone()), 412, "precondition_failed"),
        (
            serde_json::json!({"id": "cas", "op": "put", "slot": "offer", "data": "", "if_match": 7}),
            412,
            "precondition_failed",
        ),
        (
            serde_json::json!({"id": "big", "op": "put", "slot": "offer", "data": over_limit}),
            413,
            "blob_too_large",
        ),
        (
            serde_json::json!({"id": "b64", "op": "put", "slot": "offer", "data": "not base64!"}),
            400,
            "invalid_data",
        ),
        (
            serde_json::json!({"id": "slot", "op": "put", "slot": "no/slash", "data": ""}),
            400,
            "invalid_slot_name",
        ),
        (
            serde_json::json!({"id": "ttl", "op": "put", "slot": "offer", "data": "", "ttl": "2h"}),
            400,
            "invalid_ttl",
        ),
        (
            serde_json::json!({"id": "what", "op": "put", "slot": "offer", "data": "", "colour": 1}),
            400,
            "invalid_request",
        ),
        (
            serde_json::json!({"id": "nodata", "op": "put", "slot": "offer"}),
            400,
            "invalid_request",
        ),
        (
            serde_json::json!({"id": "gone", "op": "delete", "slot": "answer"}),
            404,
            "slot_not_found",
        ),
    ];
    for (frame, status, code) in cases {
        let answer = writer.request(frame.clone()).await;
        assert_eq!(kind(&answer), "error", "{frame} -> {answer}");
        assert_eq!(answer["id"], frame["id"], "{answer}");
        assert_eq!(
            (&answer["status"], &answer["error"]["code"]),
            (&status.into(), &code.into())
        );
    }
    let not_json = writer.request(Value::String("{oops".into())).await;
    assert_eq!(
        (&not_json["status"], &not_json["id"]),
        (&400.into(), &Value::Null)
    );
    writer.send(Message::Binary(vec![1, 2, 3].into())).await;
    let WsItem::Event(binary) = writer.next().await else {
        panic!("no answer to a binary frame")
    };
    assert_eq!(binary["error"]["code"], "text_frames_only");

    // Compare-and-set and delete, with a ttl given in seconds; the socket survived the refusals.
    let cas = serde_json::json!({"id": 2, "op": "put", "slot": "offer", "data": "aGVsbG8=",
                                 "if_match": 1, "ttl": 30});
    let ack = writer.request(cas).await;
    assert_eq!((kind(&ack), &ack["version"]), ("ack", &2.into()), "{ack}");
    assert!(ack["expires_at"].as_u64().is_some(), "{ack}");
    let delete = serde_json::json!({"id": 3, "op": "delete", "slot": "offer", "if_match": 2});
    let ack = writer.request(delete).await;
    assert_eq!((kind(&ack), &ack["version"]), ("ack", &3.into()), "{ack}");
    for (op, version) in [("put", 2), ("delete", 3)] {
        let WsItem::Event(e) = reader.next().await else {
            panic!("expected {op}")
        };
        assert_eq!(
            (&e["op"], &e["version"]),
            (&op.into(), &version.into()),
            "{e}"
        );
    }
    let metrics = s.get("/metrics").await.text().await.unwrap();
    for line in [
        "sb_websocket_writes_total{status=\"200\"} 3",
        "sb_websocket_writes_total{status=\"412\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} missing");
    }

    // A frame over the limit (a largest blob in base64, plus room for fields) closes the socket.
    let huge = "x".repeat(8 * 1024);
    writer.send(Message::Text(huge.into())).await;
    assert!(matches!(writer.next().await, WsItem::Close(1009)));

    // Socket writes draw from the same write bucket; a refusal says when to retry.
    let s = boot(&["--writes-per-second", "1"]).await;
    let code = s.create_room().await;
    let mut ws = s.ws(&format!("/v1/rooms/{code}/ws")).await;
    assert!(matches!(ws.next().await, WsItem::Event(_)), "ready");
    let mut statuses = Vec::new();
    for id in 0..6 {
        let put = serde_json::json!({"id": id, "op": "put", "slot": "offer", "data": "aGk="});
        let answer = writer_answer(&mut ws, put).await;
        if kind(&answer) == "error" {
            assert_eq!(answer["error"]["code"], "rate_limited", "{answer}");
            assert!(answer["retry_after"].as_u64() >= Some(1), "{answer}");
        }
        statuses.push(answer["status"].as_u64().unwrap_or(200));
    }
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "{statuses:?}"
    );
}

/// Write frames sent back to back, in one TCP write, are applied one by one in the order sent
/// and answered in that order: the second write-once put of a slot sees the first.
pub async fn websocket_writes_back_to_back(boot: Boot<'_>) {
    let s = boot(&[]).await;
    let code = s.create_room().await;
    let mut ws = s.ws(&format!("/v1/rooms/{code}/ws?slot=idle")).await;
    assert!(matches!(ws.next().await, WsItem::Event(_)), "ready");
    let frames = [
        serde_json::json!({"id": 1, "op": "put", "slot": "offer", "data": "aGk=", "if_none_match": "*"}),
        serde_json::json!({"id": 2, "op": "put", "slot": "offer", "data": "aGk=", "if_none_match": "*"}),
        serde_json::json!({"id": 3, "op": "put", "slot": "offer", "data": "aGVsbG8=", "if_match": 1}),
        serde_json::json!({"id": 4, "op": "delete", "slot": "offer", "if_match": 1}),
        serde_json::json!({"id": 5, "op": "delete", "slot": "offer", "if_match": 2}),
    ];
    let answers: Vec<_> = ws
        .answers_together(&frames)
        .await
        .iter()
        .map(|answer| {
            (
                answer["id"].as_u64(),
                kind(answer).to_owned(),
                answer["status"].as_u64(),
            )
        })
        .collect();
    let expected = [(1, "ack", None), (2, "error", Some(412)), (3, "ack", None)]
        .into_iter()
        .chain([(4, "error", Some(412)), (5, "ack", None)])
        .map(|(id, kind, status)| (Some(id), kind.to_owned(), status))
        .collect::<Vec<_>>();
    assert_eq!(answers, expected);
    let blob = s.get(&format!("/v1/rooms/{code}/blobs/offer")).await;
    assert_eq!(blob.status(), 404);
}

/// Bad frames among writes sent back to back are refused on their own: the puts around them,
/// which reach the store together, are applied and answered in order.
pub async fn websocket_bad_frames_within_a_burst(boot: Boot<'_>) {
    let s = boot(&[]).await;
    let code = s.create_room().await;
    let mut ws = s.ws(&format!("/v1/rooms/{code}/ws?slot=idle")).await;
    assert!(matches!(ws.next().await, WsItem::Event(_)), "ready");
    let frames = [
        serde_json::json!({"id": 1, "op": "put", "slot": "cand-1", "data": "aGk="}),
        serde_json::json!({"id": 2, "op": "put", "data": "aGk="}),
        serde_json::json!({"id": 3, "op": "put", "slot": "cand-2", "data": "!!"}),
        serde_json::json!({"id": 4, "op": "put", "slot": "bad slot", "data": "aGk="}),
        serde_json::json!({"id": 5, "op": "put", "slot": "cand-3", "data": "aGk="}),
    ];
    let answers: Vec<_> = ws
        .answers_together(&frames)
        .await
        .iter()
        .map(|answer| {
            (
                answer["id"].as_u64(),
                answer["status"].as_u64(),
                answer["error"]["code"].as_str().map(str::to_owned),
                answer["version"].as_u64(),
            )
        })
        .collect();
    let refused = |id: u64, code: &str| (Some(id), Some(400), Some(code.to_owned()), None);
    assert_eq!(
        answers,
        [
            (Some(1), None, None, Some(1)),
            refused(2, "invalid_request"),
            refused(3, "invalid_data"),
            refused(4, "invalid_slot_name"),
            (Some(5), None, None, Some(2)),
        ]
    );
    for (slot, status) in [("cand-1", 200), ("cand-2", 404), ("cand-3", 200)] {
        let blob = s.get(&format!("/v1/rooms/{code}/blobs/{slot}")).await;
        assert_eq!(blob.status(), status, "{slot}");
    }
}

/// The answer to a write frame, skipping the change events the socket's own writes cause.
async fn writer_answer(ws: &mut crate::support::WsClient, frame: Value) -> Value {
    let mut answer = ws.request(frame).await;
    while kind(&answer) == "change" {
        let WsItem::Event(next) = ws.next().await else {
            panic!("socket ended")
        };
        answer = next;
    }
    answer
}

pub async fn long_poll(boot: Boot<'_>) {
    let s = boot(&[]).await;
    let code = s.create_room().await;
    let path = format!("/v1/rooms/{code}/changes");
    s.put_ok(&code, "offer", "o").await;
    let now: Value = s
        .get(&format!("{path}?after=0"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(now["version"], 1);
    assert_eq!(now["events"][0]["slot"], "offer");

    let empty: Value = s
        .get(&format!("{path}?after=1&wait=0"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            empty["version"].as_u64(),
            empty["events"].as_array().unwrap().len()
        ),
        (Some(1), 0)
    );

    let poll = s.http.get(s.url(&format!("{path}?after=1&wait=30"))).send();
    let writer = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.put_ok(&code, "answer", "a").await
    };
    let (r, _) = tokio::join!(poll, writer);
    let got: Value = r.unwrap().json().await.unwrap();
    assert_eq!(got["version"], 2);
    assert_eq!(got["events"][0]["slot"], "answer");

    assert_eq!(
        s.get(&format!("{path}?after=1&wait=61")).await.status(),
        400
    );
    assert_eq!(s.get(&format!("{path}?after=x")).await.status(), 400);
}

pub async fn watchers_see_room_expiry(boot: Boot<'_>) {
    let s = boot(&["--idle-ttl", "300ms", "--max-age", "1h"]).await;
    let code = s.create_room().await;
    let mut sse = s.sse(&format!("/v1/rooms/{code}/events"), None).await;
    let mut ws = s.ws(&format!("/v1/rooms/{code}/ws")).await;
    let poll = tokio::spawn(
        s.http
            .get(s.url(&format!("/v1/rooms/{code}/changes?after=0&wait=10")))
            .send(),
    );
    assert_eq!(sse.next().await.unwrap().event, "ready");
    let expired = sse.next().await.unwrap();
    assert_eq!(expired.event, "room_expired");
    assert!(sse.next().await.is_none());
    let WsItem::Event(_ready) = ws.next().await else {
        panic!()
    };
    let WsItem::Event(e) = ws.next().await else {
        panic!()
    };
    assert_eq!(kind(&e), "room_expired");
    let polled: Value = poll.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(polled["events"][0]["type"], "room_expired");
}

pub async fn turn_credentials(boot: Boot<'_>) {
    let s = boot(&[
        "--turn-secrets",
        "newest,older",
        "--turn-urls",
        "turn:127.0.0.1:3478?transport=udp,turns:127.0.0.1:5349",
        "--stun-urls",
        "stun:127.0.0.1:3478",
        "--turn-ttl",
        "10m",
    ])
    .await;
    for path in ["/turn-credentials", "/v1/turn-credentials?user=alice"] {
        let body: Value = s.get(path).await.json().await.unwrap();
        assert_eq!(body["ttl"], 600);
        let servers = body["iceServers"].as_array().unwrap();
        assert_eq!(servers[0]["urls"][0], "stun:127.0.0.1:3478");
        assert!(servers[0].get("username").is_none());
        let username = servers[1]["username"].as_str().unwrap();
        let credential = servers[1]["credential"].as_str().unwrap();
        assert_eq!(servers[1]["urls"].as_array().unwrap().len(), 2);
        let secrets = common::turn_auth::SharedSecret::parse_list("newest\nolder").unwrap();
        assert_eq!(
            credential,
            common::turn_auth::credential_for(&secrets[0], username)
        );
        common::turn_auth::verify(&secrets, username, credential, s.clock.now_unix()).unwrap();
    }
    assert_eq!(s.get("/turn-credentials?user=a:b").await.status(), 400);
}

pub async fn abuse_limits(boot: Boot<'_>) {
    let s = boot(&[
        "--create-per-minute",
        "2",
        "--max-watchers-per-room",
        "1",
        "--writes-per-second",
        "2",
    ])
    .await;
    let code = s.create_room().await;
    s.create_room().await;
    let r = s.http.post(s.url("/v1/rooms")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "rate_limited"
    );

    let _first = s.sse(&format!("/v1/rooms/{code}/events"), None).await;
    let second = s.get(&format!("/v1/rooms/{code}/events")).await;
    assert_eq!(second.status(), 429);

    let statuses: Vec<u16> = {
        let mut out = Vec::new();
        for _ in 0..8 {
            out.push(s.put(&code, "offer", "x").await.status().as_u16());
        }
        out
    };
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "{statuses:?}"
    );
}

pub async fn ops_endpoints(boot: Boot<'_>) {
    let s = boot(&[]).await;
    assert_eq!(s.get("/healthz").await.status(), 200);
    assert_eq!(s.get("/readyz").await.status(), 200);
    let code = s.create_room().await;
    s.put_ok(&code, "offer", "hello").await;
    let metrics = s.get("/metrics").await.text().await.unwrap();
    for name in [
        "sb_http_requests_total{method=\"PUT\",route=\"/v1/rooms/{code}/blobs/{slot}\",status=\"200\"} 1",
        "sb_rooms_created_total 1",
        "sb_blobs_written_total 1",
        "sb_http_request_duration_seconds_bucket",
        "sb_redis_errors_total 0",
    ] {
        assert!(metrics.contains(name), "missing {name} in\n{metrics}");
    }
    assert!(
        !metrics.contains(&code),
        "metrics must not carry room codes"
    );
    let spec: Value = s.get("/openapi.json").await.json().await.unwrap();
    assert!(spec["paths"]["/v1/rooms/{code}/blobs/{slot}"].is_object());
    assert_eq!(
        s.get("/nowhere").await.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
}

pub async fn shutdown_ends_streams_with_a_final_event(boot: Boot<'_>) {
    let s = boot(&[]).await;
    let code = s.create_room().await;
    let mut sse = s.sse(&format!("/v1/rooms/{code}/events"), None).await;
    let mut ws = s.ws(&format!("/v1/rooms/{code}/ws")).await;
    assert_eq!(sse.next().await.unwrap().event, "ready");
    let WsItem::Event(_) = ws.next().await else {
        panic!()
    };
    s.shutdown.cancel();
    assert_eq!(sse.next().await.unwrap().event, "shutdown");
    assert!(sse.next().await.is_none());
    let WsItem::Event(e) = ws.next().await else {
        panic!()
    };
    assert_eq!(kind(&e), "shutdown");
    assert!(matches!(ws.next().await, WsItem::Close(1001)));
    tokio::time::timeout(crate::support::WAIT, s.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
