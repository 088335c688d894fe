//! The control plane over real HTTPS on 127.0.0.1: every error code of `POST /v1/proxy` in
//! its documented order, success with ordered edges, dead and draining edges excluded,
//! concurrency quota under concurrent requests, leases (on a clock the test moves), secret
//! rotation, and the OpenAPI document kept in the repo.

use credentials::join_token::mint_join_token;
use credentials::{Secret, SecretSet};
use integration_tests::control::{edge_hb, TestControl};
use reqwest::Method;
use serde_json::{json, Value};

fn token(app: &control_api::App, channel: &str, uid: &str, expires_at: u64) -> String {
    mint_join_token(
        &app.app_id,
        app.certificate.as_bytes(),
        channel,
        uid,
        expires_at,
    )
}

fn req(app: &control_api::App, mode: &str, tok: &str) -> Value {
    json!({"app_id": app.app_id, "channel": "room1", "uid": "u1", "mode": mode, "token": tok})
}

fn assert_error(got: &(u16, Value), status: u16, code: &str, retryable: bool) {
    assert_eq!(got.0, status, "{got:?}");
    assert_eq!(got.1["code"], code, "{got:?}");
    assert_eq!(got.1["retryable"], retryable, "{got:?}");
    assert!(
        got.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{got:?}"
    );
}

#[tokio::test]
async fn every_error_code_and_its_order() {
    let t = TestControl::start(|_| {}).await;
    let now = t.clock.now();
    let app = t
        .create_app(
            json!({"name": "bank", "modes": ["udp", "tcp"], "areas": ["CN"], "max_concurrency": 1}),
        )
        .await;
    let good = token(&app, "room1", "u1", now + 600);

    // BAD_REQUEST: not JSON, a missing field, an unknown field, an empty channel.
    let r = t
        .http
        .post(format!("{}/v1/proxy", t.base))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "BAD_REQUEST");
    assert_error(
        &t.proxy(&json!({"app_id": app.app_id, "channel": "c", "uid": "u", "token": good}))
            .await,
        400,
        "BAD_REQUEST",
        false,
    );
    let mut extra = req(&app, "udp", &good);
    extra["surprise"] = json!(1);
    assert_error(&t.proxy(&extra).await, 400, "BAD_REQUEST", false);
    let mut empty = req(&app, "udp", &good);
    empty["channel"] = json!("");
    assert_error(&t.proxy(&empty).await, 400, "BAD_REQUEST", false);

    // APP_NOT_FOUND.
    let mut unknown = req(&app, "udp", &good);
    unknown["app_id"] = json!("nosuchapp");
    assert_error(&t.proxy(&unknown).await, 404, "APP_NOT_FOUND", false);

    // MODE_NOT_ENABLED (tls is not enabled for this app).
    assert_error(
        &t.proxy(&req(&app, "tls", &good)).await,
        403,
        "MODE_NOT_ENABLED",
        false,
    );

    // INVALID_TOKEN: forged; signed for another channel; wrong format.
    let forged = good.replace('A', "B");
    let forged = if forged == good {
        format!("{good}x")
    } else {
        forged
    };
    assert_error(
        &t.proxy(&req(&app, "udp", &forged)).await,
        401,
        "INVALID_TOKEN",
        false,
    );
    assert_error(
        &t.proxy(&req(
            &app,
            "udp",
            &token(&app, "other-room", "u1", now + 600),
        ))
        .await,
        401,
        "INVALID_TOKEN",
        false,
    );
    assert_error(
        &t.proxy(&req(&app, "udp", "garbage")).await,
        401,
        "INVALID_TOKEN",
        false,
    );

    // TOKEN_EXPIRED (a genuine token past its expiry).
    assert_error(
        &t.proxy(&req(&app, "udp", &token(&app, "room1", "u1", now - 1)))
            .await,
        401,
        "TOKEN_EXPIRED",
        false,
    );

    // AREA_FORBIDDEN: the app allows CN; the client hints EU (and by address it is GLOBAL).
    let mut eu = req(&app, "udp", &good);
    eu["area"] = json!("EU");
    assert_error(&t.proxy(&eu).await, 403, "AREA_FORBIDDEN", false);
    assert_error(
        &t.proxy(&req(&app, "udp", &good)).await,
        403,
        "AREA_FORBIDDEN",
        false,
    );
    let mut cn = req(&app, "udp", &good);
    cn["area"] = json!("CN");

    // NO_EDGE_AVAILABLE: nothing registered in the app's pool.
    assert_error(&t.proxy(&cn).await, 503, "NO_EDGE_AVAILABLE", true);

    // With edges: success, then QUOTA_EXCEEDED (max_concurrency 1).
    t.heartbeat(&edge_hb("e1", &app.pool, "CN", "", 0)).await;
    let ok = t.proxy(&cn).await;
    assert_eq!(ok.0, 200, "{ok:?}");
    assert_error(&t.proxy(&cn).await, 429, "QUOTA_EXCEEDED", true);

    // PROXY_NOT_ENABLED: suspended (checked before mode, token, area and quota).
    let r = t
        .admin(Method::PATCH, &format!("/v1/admin/apps/{}", app.app_id))
        .json(&json!({"status": "suspended"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_error(
        &t.proxy(&req(&app, "tls", "garbage")).await,
        403,
        "PROXY_NOT_ENABLED",
        false,
    );

    // Order: with everything wrong at once, the earliest check answers.
    let r = t
        .admin(Method::PATCH, &format!("/v1/admin/apps/{}", app.app_id))
        .json(&json!({"status": "enabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut all_wrong = req(&app, "tls", "garbage");
    all_wrong["area"] = json!("EU");
    assert_error(&t.proxy(&all_wrong).await, 403, "MODE_NOT_ENABLED", false);
    let mut token_and_area = req(&app, "udp", "garbage");
    token_and_area["area"] = json!("EU");
    assert_error(&t.proxy(&token_and_area).await, 401, "INVALID_TOKEN", false);
    let mut expired_and_area = req(&app, "udp", &token(&app, "room1", "u1", now - 1));
    expired_and_area["area"] = json!("EU");
    assert_error(
        &t.proxy(&expired_and_area).await,
        401,
        "TOKEN_EXPIRED",
        false,
    );
    // Quota precedes "no edge": drop the edge (lease runs out) while the slot is held.
    t.clock.advance(16);
    // The session lease (60 s) outlives the edge lease (15 s): the quota is still full.
    assert_error(&t.proxy(&cn).await, 429, "QUOTA_EXCEEDED", true);

    // UNAUTHORIZED on the admin and edge APIs.
    let r = t
        .http
        .get(format!("{}/v1/admin/apps", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "UNAUTHORIZED");
    let r = t
        .http
        .get(format!("{}/v1/admin/apps", t.base))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = t
        .http
        .post(format!("{}/v1/edges/heartbeat", t.base))
        .bearer_auth(t.cp.admin_token())
        .json(&edge_hb("x", "p", "r", "", 0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the admin token is not an edge token");
}

#[tokio::test]
async fn success_orders_edges_and_hands_out_working_credentials() {
    let t = TestControl::start(|c| {
        c.geo = vec![control_plane::GeoRule {
            cidr: "127.0.0.0/8".parse().unwrap(),
            region: "CN".into(),
            isp: "cmcc".into(),
        }];
        c.rtn_upstreams = vec!["10.200.2.2:8443".into()];
    })
    .await;
    let now = t.clock.now();
    let app = t
        .create_app(json!({"name": "hospital", "areas": ["CN", "EU"]}))
        .await;
    assert_eq!(
        app.pool, "test-cn",
        "a test app with CN among its areas lands in the domestic test pool"
    );
    let pool = app.pool.clone();
    t.heartbeat(&edge_hb("far", &pool, "EU", "x", 0)).await;
    t.heartbeat(&edge_hb("near-busy", &pool, "CN", "ctcc", 900))
        .await;
    t.heartbeat(&edge_hb("near-idle", &pool, "CN", "ctcc", 10))
        .await;
    t.heartbeat(&edge_hb("near-isp", &pool, "CN", "cmcc", 500))
        .await;
    let mut draining = edge_hb("draining", &pool, "CN", "cmcc", 0);
    draining.draining = true;
    t.heartbeat(&draining).await;
    t.heartbeat(&edge_hb("drained-by-operator", &pool, "CN", "cmcc", 0))
        .await;
    let r = t
        .admin(Method::POST, "/v1/admin/edges/drained-by-operator/drain")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    t.heartbeat(&edge_hb("other-pool", "test-global", "CN", "cmcc", 0))
        .await;
    // An edge that stops heartbeating: its lease (15 s) runs out.
    t.heartbeat(&edge_hb("dead", &pool, "CN", "cmcc", 0)).await;
    t.clock.advance(10);
    for id in ["far", "near-busy", "near-idle", "near-isp", "other-pool"] {
        let mut hb = edge_hb(
            id,
            if id == "other-pool" {
                "test-global"
            } else {
                &pool
            },
            if id == "far" { "EU" } else { "CN" },
            "",
            0,
        );
        hb.isp = match id {
            "near-isp" => "cmcc",
            "far" => "x",
            _ => "ctcc",
        }
        .into();
        hb.load.allocations = match id {
            "near-busy" => 900,
            "near-idle" => 10,
            "near-isp" => 500,
            _ => 0,
        };
        let resp = t.heartbeat(&hb).await;
        assert!(!resp.drain);
    }
    t.clock.advance(6); // "dead" last beat 16 s ago

    // The client's address (127.0.0.1) maps to CN/cmcc by the geo table.
    let tok = token(&app, "room1", "u1", now + 600);
    let (status, body) = t.proxy(&req(&app, "udp", &tok)).await;
    assert_eq!(status, 200, "{body}");
    let resp: control_api::ProxyResponse = serde_json::from_value(body).unwrap();
    let ids: Vec<&str> = resp.edges.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        ["near-isp", "near-idle", "near-busy", "far"],
        "region, then ISP, then load; no dead/draining/other pool"
    );
    assert_eq!(
        resp.edges[0].ice_servers[0].urls,
        ["turn:192.0.2.10:3478?transport=udp"]
    );

    // The TURN credential verifies with the secrets edges learn from their heartbeat.
    let hb = t
        .heartbeat(&edge_hb("near-isp", &pool, "CN", "cmcc", 500))
        .await;
    let set = SecretSet::new(
        hb.turn_secrets
            .iter()
            .map(|k| Secret::new(k.key_id.clone(), k.secret.clone().into_bytes()))
            .collect(),
    )
    .unwrap();
    let v = credentials::verify_password(&set, &resp.turn.username, &resp.turn.password, now, None)
        .unwrap();
    assert_eq!(v.session, resp.session);
    assert!(resp.turn.expires_at >= now + 600 - 1 && resp.turn.expires_at <= now + 600 + 20);
    let ticket_keys = SecretSet::new(
        hb.ticket_keys
            .iter()
            .map(|k| Secret::new(k.key_id.clone(), k.secret.clone().into_bytes()))
            .collect(),
    )
    .unwrap();
    let claims =
        credentials::ticket::verify_ticket(&ticket_keys, &resp.ticket, t.clock.now()).unwrap();
    assert_eq!(claims.app_id, app.app_id);
    assert_eq!(claims.session, resp.session);
    assert!(claims.allows_upstream("10.200.2.2:8443"));

    // TLS mode lists turns: URLs; the hint overrides the address.
    let mut eu = req(&app, "tls", &tok);
    eu["area"] = json!("EU");
    let (status, body) = t.proxy(&eu).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["edges"][0]["id"], "far");
    assert_eq!(
        body["edges"][0]["ice_servers"][0]["urls"][0],
        "turns:192.0.2.10:443?transport=tcp"
    );

    // Rotation: a new current key; the old one keeps verifying.
    let r = t
        .admin(Method::POST, "/v1/admin/secrets/rotate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rotated: control_api::RotatedSecrets = r.json().await.unwrap();
    let hb2 = t
        .heartbeat(&edge_hb("near-isp", &pool, "CN", "cmcc", 500))
        .await;
    assert_eq!(hb2.turn_secrets[0].key_id, rotated.turn_key_id);
    assert!(
        hb2.turn_secrets
            .iter()
            .any(|k| k.key_id == hb.turn_secrets[0].key_id),
        "the previous key stays for verification"
    );
    let (_, body) = t.proxy(&req(&app, "udp", &tok)).await;
    assert!(body["turn"]["username"]
        .as_str()
        .unwrap()
        .contains(&format!(":{}:", rotated.turn_key_id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quota_admits_exactly_max_under_concurrency_and_leases_free_slots() {
    let t = std::sync::Arc::new(TestControl::start(|_| {}).await);
    let now = t.clock.now();
    let app = t
        .create_app(json!({"name": "univ", "max_concurrency": 5}))
        .await;
    t.heartbeat(&edge_hb("e1", &app.pool, "GLOBAL", "", 0))
        .await;
    t.heartbeat(&edge_hb("e2", &app.pool, "GLOBAL", "", 0))
        .await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let t = t.clone();
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let uid = format!("u{i}");
            let tok = mint_join_token(&app.app_id, app.certificate.as_bytes(), "room1", &uid, now + 600);
            t.proxy(&json!({"app_id": app.app_id, "channel": "room1", "uid": uid, "mode": "udp", "token": tok})).await
        }));
    }
    let mut admitted = Vec::new();
    let mut refused = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            200 => admitted.push(body["session"].as_str().unwrap().to_owned()),
            429 => {
                assert_eq!(body["code"], "QUOTA_EXCEEDED");
                refused += 1
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(admitted.len(), 5, "exactly max_concurrency admitted");
    assert_eq!(refused, 35);
    let usage: control_api::AppUsage = t
        .admin(Method::GET, &format!("/v1/admin/apps/{}/usage", app.app_id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage.active_sessions, 5);

    let one_more = |uid: &str| {
        let tok = mint_join_token(
            &app.app_id,
            app.certificate.as_bytes(),
            "room1",
            uid,
            now + 6000,
        );
        json!({"app_id": app.app_id, "channel": "room1", "uid": uid, "mode": "udp", "token": tok})
    };
    // Releasing one frees one slot.
    let r = t
        .http
        .delete(format!("{}/v1/proxy/{}", t.base, admitted[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = t
        .http
        .delete(format!("{}/v1/proxy/{}", t.base, admitted[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "releasing twice");
    let (status, body) = t.proxy(&one_more("x1")).await;
    assert_eq!(status, 200, "{body}");
    let x1 = body["session"].as_str().unwrap().to_owned();
    assert_eq!(t.proxy(&one_more("x2")).await.0, 429);

    // A crashed client: nothing releases it. An edge reporting traffic keeps a session's lease
    // alive; the others expire after the session lease (60 s) and free their slots.
    let mut hb = edge_hb("e1", &app.pool, "GLOBAL", "", 0);
    hb.sessions = vec![x1.clone(), admitted[1].clone()];
    for _ in 0..3 {
        t.clock.advance(25);
        t.heartbeat(&hb).await;
        t.heartbeat(&edge_hb("e2", &app.pool, "GLOBAL", "", 0))
            .await;
    }
    let usage: control_api::AppUsage = t
        .admin(Method::GET, &format!("/v1/admin/apps/{}/usage", app.app_id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        usage.active_sessions, 2,
        "only the sessions an edge reports survive their lease"
    );
    for i in 0..3 {
        let (status, body) = t.proxy(&one_more(&format!("y{i}"))).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(t.proxy(&one_more("y9")).await.0, 429);
}

#[tokio::test]
async fn trusted_proxy_forwarded_address_picks_the_region() {
    let t = TestControl::start(|c| {
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.geo = vec![control_plane::GeoRule {
            cidr: "203.0.113.0/24".parse().unwrap(),
            region: "EU".into(),
            isp: "".into(),
        }];
    })
    .await;
    let app = t
        .create_app(json!({"name": "ministry", "areas": ["EU"]}))
        .await;
    t.heartbeat(&edge_hb("e1", &app.pool, "EU", "", 0)).await;
    let tok = token(&app, "room1", "u1", t.clock.now() + 600);
    let body = req(&app, "udp", &tok);
    let post = |xff: &'static str| {
        t.http
            .post(format!("{}/v1/proxy", t.base))
            .header("x-forwarded-for", xff)
            .json(&body)
            .send()
    };
    assert_eq!(
        post("203.0.113.9, 10.0.0.1").await.unwrap().status(),
        200,
        "EU client behind a trusted balancer"
    );
    let r = post("198.51.100.1").await.unwrap();
    assert_eq!(
        r.status(),
        403,
        "a GLOBAL client is outside the app's areas"
    );
}

#[tokio::test]
async fn admin_crud_promote_and_whitelist() {
    let t = TestControl::start(|c| c.public_addresses = vec!["192.0.2.1".into()]).await;
    let app = t
        .create_app(json!({"name": "trial", "app_id": "trial1"}))
        .await;
    assert_eq!(
        (app.pool.as_str(), app.environment),
        ("test-global", control_api::Environment::Test)
    );
    let r = t
        .admin(Method::POST, "/v1/admin/apps")
        .json(&json!({"name": "dup", "app_id": "trial1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    t.heartbeat(&edge_hb("tg1", "test-global", "GLOBAL", "", 0))
        .await;
    let mut prod = edge_hb("p1", "prod-trial1", "GLOBAL", "", 0);
    prod.address = "198.51.100.77".into();
    t.heartbeat(&prod).await;
    let wl = t
        .admin(Method::GET, "/v1/admin/apps/trial1/whitelist?format=csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        wl.contains("192.0.2.10") && !wl.contains("198.51.100.77"),
        "test whitelist: {wl}"
    );
    assert!(
        wl.contains("192.0.2.1,"),
        "control plane address is listed: {wl}"
    );
    let r = t
        .admin(Method::POST, "/v1/admin/apps/trial1/promote")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let promoted: control_api::App = r.json().await.unwrap();
    assert_eq!(
        (promoted.pool.as_str(), promoted.environment),
        ("prod-trial1", control_api::Environment::Production)
    );
    assert_eq!(
        promoted.certificate, app.certificate,
        "promotion does not change what the client uses"
    );
    let wl = t
        .admin(Method::GET, "/v1/admin/apps/trial1/whitelist?format=csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        wl.contains("198.51.100.77") && !wl.contains("192.0.2.10,"),
        "production whitelist: {wl}"
    );
    let nft = t
        .admin(
            Method::GET,
            "/v1/admin/apps/trial1/whitelist?format=nftables",
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        nft.contains("198.51.100.77") && nft.contains("policy drop"),
        "{nft}"
    );
    let list: Vec<control_api::App> = t
        .admin(Method::GET, "/v1/admin/apps")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    let edges: Vec<control_api::EdgeInfo> = t
        .admin(Method::GET, "/v1/admin/edges")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(edges.len(), 2);
    assert_eq!(
        t.admin(Method::DELETE, "/v1/admin/apps/trial1")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        t.admin(Method::GET, "/v1/admin/apps/trial1")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        t.admin(Method::POST, "/v1/admin/edges/nosuch/drain")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let big = "x".repeat(200_000);
    let r = t
        .admin(Method::POST, "/v1/admin/apps")
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "request bodies are capped");
    let health = t
        .http
        .get(format!("{}/healthz", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let metrics = t
        .http
        .get(format!("{}/metrics", t.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("cloudproxy_proxy_requests_total"),
        "{metrics}"
    );
    let r = t
        .http
        .get(format!("{}/v1/admin/apps", t.base))
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn openapi_document_is_served_and_kept_in_the_repo() {
    let t = TestControl::start(|_| {}).await;
    let served = t
        .http
        .get(format!("{}/openapi.json", t.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let doc: Value = serde_json::from_str(&served).unwrap();
    for path in [
        "/v1/proxy",
        "/v1/proxy/{session}",
        "/v1/edges/heartbeat",
        "/v1/admin/apps",
        "/v1/admin/apps/{app_id}/whitelist",
        "/v1/admin/secrets/rotate",
        "/healthz",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "OpenAPI lacks {path}");
    }
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&file, &served).unwrap();
    }
    let kept = std::fs::read_to_string(&file)
        .expect("docs/openapi.json (regenerate with UPDATE_OPENAPI=1)");
    assert_eq!(kept, served, "docs/openapi.json is stale: run UPDATE_OPENAPI=1 cargo test -p integration-tests --test control_plane_api");
}

#[tokio::test]
async fn browsers_may_call_the_proxy_info_routes_cross_origin_but_not_the_admin_api() {
    let t = TestControl::start(|_| {}).await;
    let preflight = |path: &str, method: &str| {
        t.http
            .request(Method::OPTIONS, format!("{}{path}", t.base))
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let r = preflight("/v1/proxy", "POST").await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("*")
    );
    let r = preflight("/v1/proxy/abc", "DELETE").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_some());
    let r = preflight("/v1/admin/apps", "POST").await.unwrap();
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "the admin API is not open to browsers"
    );
}
